"""Meta-RL agents shipped with metarl (installed as ``metarl.agents``)."""
