from collections.abc import Callable
from typing import Any

class Loop:
    def __init__(self, little: bool, nano: bool, link: int, eoff: int, v4_proto: bytes,
                 v6_proto: bytes | None, idle: int, tcp: dict[bytes, Any],
                 udp: dict[bytes, Any], model: dict[str, object]) -> None: ...
    run: Callable[[bytearray, int, int, int], tuple[int, int]]

def epb_run(buf: bytearray, off: int, blen: int, little: bool, links: tuple[int, ...],
            mults: tuple[int, ...], max_record: int, max_block: int, out: bytearray,
            pos: int) -> tuple[int, int, int, int, int]: ...
