"""Reading the cluster: kubectl dumps (:mod:`.dump`), the inventory file (:mod:`.cache`), the
live API (:mod:`.client`, :mod:`.live`, :mod:`.watch`, :mod:`.policies`), and what the inventory
says about Services (:mod:`.services`) and cluster DNS (:mod:`.dns`)."""
