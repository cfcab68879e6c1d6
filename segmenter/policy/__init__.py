"""The dialect-neutral policy IR and the lowering of a plan into it."""
