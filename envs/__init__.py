"""Task families shipped with metarl (installed as ``metarl.envs``)."""
