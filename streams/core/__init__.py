"""The pure stages of one event's path, in the order it takes them.

``validate`` (is the event well formed?) → ``features`` (the sibling package: windowed features per entity)
→ ``inputs`` (the model's input row) → ``predictor`` (which model serves, and its answer) → ``serve`` (the
pure step over a batch of events: everything it produces) → ``join`` / ``join_batch`` (a label meets the
features logged with its prediction: one example for the learner). ``partitions`` is Kafka's partitioner
as a pure function.

Nothing here imports Faust, aiokafka, kafka-python's I/O or Redis (``tests/unit/test_layers.py`` checks):
the runtime moves bytes and calls these.
"""
