"""``zkqueue serve`` (placeholder until the HTTP API lands)."""


def serve(cfg, host: str, port: int) -> int:
    raise NotImplementedError("the HTTP API is not built yet")
