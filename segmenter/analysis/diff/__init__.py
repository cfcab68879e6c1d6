"""Comparing two policy sets: objects (:mod:`.structural`, after :mod:`.normalize`), connections
(:mod:`.semantic`), and the result as text or JSON (:mod:`.text`)."""
