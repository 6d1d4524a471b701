"""The runtime: what moves bytes between Kafka, Redis and the pure stages.

``worker`` starts the Faust app of ``app`` (the events and join agents, their tables in ``topics``),
``hot_swap`` follows ``model-versions`` and swaps the served model, ``learner_loop`` is the learner process
(examples in, versions and metrics out), ``store`` and ``connections`` are the Redis adapters, ``metrics``
the Prometheus instruments. It may import ``streams.core``, ``streams.features`` and ``models``; never
``streams.ops``.
"""
