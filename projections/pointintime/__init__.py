"""Point-in-time replay of the registry: ``--as-of`` (recorded by T) and ``--valid-at`` (occurred by T).

The embedded broker cannot look up offsets by time, so replay reads the registry topics from the
beginning and filters by the events' own times (decision 0044).
"""
