"""Capture side: audio sources, their resampling and the capture daemon that turns
blocks into numbered windows and pushes them to a learner (``daemon.py``).

Nothing here imports torch: ``streamssl capture`` runs on small boxes.
"""
