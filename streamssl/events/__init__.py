"""Sound-event discovery on the embedding stream (``streamssl events``)."""
