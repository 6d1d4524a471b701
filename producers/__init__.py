"""Data sources and kafka-python producers: synthetic streams, dataset replay, delayed label feeds."""
