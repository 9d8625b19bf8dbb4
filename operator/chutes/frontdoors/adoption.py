"""Whether a source object asks to take over Cloudflare objects that carry no chutes-operator marker (a DNS
record or Access application made by hand or by another tool). Pure; every front door asks here.

Adoption is opt-in per object: the annotation ``chutes.troubleshat.com/adopt: "true"`` on a ChuteGateway,
an annotated HTTPRoute or a session Pod, or ``spec.adopt: true`` on a ChuteGateway. Without it such an
object stays a conflict and is left untouched; with it, an object bearing ANOTHER installation's marker is
still a conflict (the core decides that).

Asking is not enough: the operator must permit it (:func:`permitted`), installation-wide (setting
``allow_adoption``, off by default) or through a hostname rule with ``adopt: true`` covering the source's
namespace and hostname. A tenant's annotation alone never takes over what someone else made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes.authorization import HostnameRules

ADOPT_ANNOTATION = "chutes.troubleshat.com/adopt"


def permitted(asked: bool, namespace: str, hostname: str, rules: HostnameRules | None, allow_all: bool) -> bool:
    """Whether a source's adoption request is honoured: it asked, and the installation allows adoption
    everywhere (``allow_all``) or a hostname rule says ``adopt: true`` for this namespace and hostname.
    ``rules`` None: no hostname rules (only ``allow_all`` can permit)."""
    if not asked:
        return False
    return allow_all or (rules is not None and rules.may_adopt(namespace, hostname))


NOT_PERMITTED = ("adoption is not permitted by the operator's settings (allowAdoption, or a hostname rule with "
                 "adopt: true)")


def annotation_requests(annotations: Mapping[str, Any] | None) -> bool:
    """``"true"`` (any case, surrounding blanks ignored); any other value or none means no."""
    value = (annotations or {}).get(ADOPT_ANNOTATION)
    return isinstance(value, str) and value.strip().lower() == "true"


def _annotations(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = body.get("metadata")
    return meta.get("annotations") if isinstance(meta, Mapping) else None


def gateway_requests(body: Mapping[str, Any]) -> bool:
    """A ChuteGateway: ``spec.adopt: true`` or the annotation."""
    spec = body.get("spec")
    return (isinstance(spec, Mapping) and spec.get("adopt") is True) or annotation_requests(_annotations(body))


def source_requests(body: Mapping[str, Any]) -> bool:
    """An annotated HTTPRoute (next to its ``cfzt.cloudflare.com/`` ones) or a session Pod (its session adopts when
    any of its Pods asks): the annotation."""
    return annotation_requests(_annotations(body))


def retry_now(asked: bool, ready: Mapping[str, Any] | None) -> bool:
    """Whether an object refused for a conflict (its ``Ready`` condition) that asks for adoption deserves a
    reconcile at once: its retry may be minutes away, and kopf runs no update handler while a create handler
    waits for its retry."""
    return asked and ready is not None and ready.get("status") == "False" and ready.get("reason") == c.HOSTNAME_CONFLICT
