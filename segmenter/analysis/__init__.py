"""Analysis on top of the compiled policies: the one loader of policies to judge
(:mod:`.policies`), replaying observed flows (:mod:`.verify`), what policies allow beyond what
was observed (:mod:`.probes`, :mod:`.reachability`) and diffs of policy sets (:mod:`.diff`)."""
