"""The filter's data: for each detection, the most similar region of the reference half and
the fused crop [box | match | difference] the filter network learns from.

``features`` and ``distances`` are what the similar-region search compares; ``similar`` is
the search (geometry, tie rule, the per-window reference loop), ``similar_fast`` its batched
path; ``crops`` builds, labels, stores and reads the fused crops; ``data`` serves them to
the network (grouped split, balance, augmentation); ``synthetic_detections`` stands in for a
detector in tests and dry runs.
"""
