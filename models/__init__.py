"""freshet's model side: River model factories, registry, evaluation, drift. Pure code: no Kafka imports."""
