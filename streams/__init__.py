"""freshet's stream side: the Faust app, its agents, the window engine, the online store, metrics, CLI."""
