"""Front doors: each turns one kind of Kubernetes object into Cloudflare exposures (thin kopf handlers,
pure desired-state builders, a reconciler that calls the Cloudflare core and the kube module)."""
