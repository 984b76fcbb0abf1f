"""The learning core: features, networks, objectives, the online learner and its checkpoints.

A window's path through this package: ``stream`` (converted once, per-stream state) ->
``features`` (log-mel, normaliser) -> ``models`` (encoder z, context c) -> ``core``
(embed, or one step of ``objectives``) -> back to ``learner`` as an embedding or step
statistics. ``checkpoint`` saves and restores all of it.
"""
