"""Annotation keys under our prefixes: a typo is refused (naming the closest key), while every key the seed
accepts and every key the operator or kopf writes stays valid."""

from __future__ import annotations

import kopf
import pytest
from kopf._cogs.structs.references import Resource

from chutes import runtime
from chutes.frontdoors.gateways import desired as gateways
from chutes.frontdoors.httproutes import annotations as routes
from chutes.settings import load_settings

P = "cfzt.cloudflare.com/"
# The seed's HTTPRoute keys (shared/reference/seeds-compat.md), written out: inputs, then what it writes back.
SEED_KEYS = [
    "enabled", "tenant", "hostname", "template", "tunnelId", "dnsIp", "origin.url", "origin.noTLSVerify",
    "access.enabled", "access.sessionDuration", "access.allowGroups", "access.allowEmails",
    "access.existingPolicyNames", "access.autoRedirectToIdentity", "access.enableBindingCookie",
    "access.httpOnlyCookieAttribute", "access.skipInterstitial", "access.appLauncherVisible",
    "access.serviceAuth401Redirect", "access.sameSiteCookieAttribute", "serviceToken.enabled",
    "serviceToken.duration",
    "hostnameRouteId", "cnameRecordId", "dnsRecordId", "dnsRecordIp", "accessAppId", "accessPolicyIds",
    "serviceTokenId", "serviceTokenSecretName", "lastReconcile",
]


def test_every_key_the_seed_reads_or_writes_and_ours_stay_valid_on_a_route() -> None:
    annotations = {P + key: "x" for key in SEED_KEYS}
    annotations |= {P + "conditions": "[]", "chutes.troubleshat.com/adopt": "true",
                    "kopf.cfzt.cloudflare.com/last-handled-configuration": "{}",  # the seed's kopf
                    "kopf.zalando.org/KopfFinalizerMarker": "x", "kubectl.kubernetes.io/last-applied-configuration": ""}
    assert routes.unknown_key_problems(annotations) == []


@pytest.mark.parametrize(
    ("key", "message"),
    [(P + "access.enable", f"unknown annotation {P}access.enable (did you mean {P}access.enabled?)"),
     (P + "ACCESS.ENABLED", f"unknown annotation {P}ACCESS.ENABLED (did you mean {P}access.enabled?)"),
     (P + "serviceToken.enable", f"unknown annotation {P}serviceToken.enable (did you mean {P}serviceToken.enabled?)"),
     (P + "accessApp", f"unknown annotation {P}accessApp"),  # named by the seed's docs, read by nothing
     ("chutes.troubleshat.com/Adopt",
      "unknown annotation chutes.troubleshat.com/Adopt (did you mean chutes.troubleshat.com/adopt?)"),
     ("chutes.troubleshat.com/whatever", "unknown annotation chutes.troubleshat.com/whatever")],
)
def test_an_unknown_key_under_our_prefixes_is_named_with_the_closest_known_one(key: str, message: str) -> None:
    assert routes.unknown_key_problems({P + "enabled": "true", key: "true"}) == [message]


def test_a_gateway_refuses_unknown_keys_under_our_prefix_only() -> None:
    gateways.check_annotations({"chutes.troubleshat.com/adopt": "true", P + "whatever": "x"})
    with pytest.raises(gateways.SpecError, match=r"did you mean chutes\.troubleshat\.com/adopt") as error:
        gateways.check_annotations({"chutes.troubleshat.com/adpot": "true"})
    assert error.value.reason == "InvalidSpec"


@pytest.mark.parametrize(
    ("resource", "problems"),
    [(Resource("gateway.networking.k8s.io", "v1", "httproutes"), routes.unknown_key_problems),
     (Resource("chutes.troubleshat.com", "v1alpha1", "chutegateways"), gateways.annotation_problems)],
)
def test_what_kopf_writes_under_our_prefix_is_not_a_typo(resource: Resource, problems: object) -> None:
    """kopf's storages (as the operator configures them) write its marker, diff base, touch key and the
    progress of every change handler of the kind under ``chutes.troubleshat.com/``."""
    settings = kopf.OperatorSettings()
    runtime.configure_kopf(settings)
    progress, diffbase = settings.persistence.progress_storage, settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    registry = runtime.build_registry(load_settings({}, httproutes=True, sessions=False), {})
    handler_ids = {h.id for h in registry._changing.get_all_handlers() if h.selector and h.selector.check(resource)}
    assert handler_ids  # the door has change handlers on that kind
    keys = {key for handler_id in handler_ids for key in progress.make_keys(handler_id)}
    keys |= {*progress.make_keys(progress.touch_key), *diffbase.make_keys(diffbase.key),
             f"{runtime.GROUP}/kopf-managed"}
    assert all(key.startswith("chutes.troubleshat.com/") for key in keys)
    assert callable(problems) and problems(dict.fromkeys(keys, "x")) == []


def test_a_gateway_is_reconciled_when_an_unknown_key_comes_or_goes_not_otherwise() -> None:
    """Its update handler watches only the spec: the annotation event handler asks here."""
    typo = {"chutes.troubleshat.com/adpot": "true"}
    said = {"reason": "InvalidSpec", "message": gateways.annotation_problems(typo)[0]}
    assert gateways.annotations_need_reconcile(typo, {"reason": "Reconciled", "message": "published"})
    assert gateways.annotations_need_reconcile(typo, None)
    assert not gateways.annotations_need_reconcile(typo, said)  # said already
    assert gateways.annotations_need_reconcile({}, said)  # fixed
    assert not gateways.annotations_need_reconcile({}, {"reason": "InvalidSpec", "message": "spec.replicas ..."})
    assert not gateways.annotations_need_reconcile({"chutes.troubleshat.com/adopt": "true"}, None)


@pytest.mark.parametrize("value", ["true", "false", " True ", "FALSE"])
def test_an_adopt_value_of_true_or_false_is_fine(value: str) -> None:
    annotations = {"chutes.troubleshat.com/adopt": value}
    assert gateways.annotation_problems(annotations) == [] and routes.unknown_key_problems(annotations) == []


@pytest.mark.parametrize("value", ["maybe", "yes", "", "1"])
def test_any_other_adopt_value_is_refused_on_every_door(value: str) -> None:
    annotations = {"chutes.troubleshat.com/adopt": value}
    message = f'chutes.troubleshat.com/adopt: expected "true" or "false", got {value!r}'
    assert gateways.annotation_problems(annotations) == [message] == routes.unknown_key_problems(annotations)
