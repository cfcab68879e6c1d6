from collections.abc import Callable
from typing import Any

class Loop:
    def __init__(self, little: bool, nano: bool, link: int, eoff: int, v4_proto: bytes,
                 v6_proto: bytes | None, idle: int, tcp: dict[bytes, Any],
                 udp: dict[bytes, Any], model: dict[str, object]) -> None: ...
    run: Callable[[bytearray, int, int, int], tuple[int, int]]
