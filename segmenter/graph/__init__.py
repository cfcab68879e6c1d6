"""The communication graph: resolving flow addresses to workloads (:mod:`.resolve`), building the
graph (:mod:`.build`), its files (:mod:`.io`) and summaries (:mod:`.stats`)."""
