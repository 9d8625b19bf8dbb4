"""DNS record rules shared by the single-record endpoints and the batch: validation, conflicts,
quota. Functions work on a zone's ``{id: record}`` dict so the batch can run them on a copy.

Error codes: 400/9000 name invalid or outside the zone (relative one-label names get the zone
appended, ``@`` is the apex) · 400/9005 content invalid · 400/9039 CNAME pointing at itself ·
400/9020 unsupported type (the sandbox knows A, AAAA, CNAME, TXT, MX, NS) · 400/9021 TTL ·
400/9004 type cannot be proxied · 400/9003 target cannot be proxied (private address) ·
400/9313 comment too long (100 Free, 500 paid) · 400/9300 tag quota (0 on Free: tags refused;
20 on paid plans) · 400/9301 tag not ``name:value`` · 400/1004 other field errors ·
400/81045 zone record quota (200 Free, 3,500 paid) · 400/81053 A/AAAA/CNAME same-host clash ·
400/81054 CNAME next to another type · 400/81058 identical record · 404/81044 unknown id.
Proxied records are stored with ``ttl: 1`` (automatic), as Cloudflare does.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .envelope import ApiError
from .state import ZoneInfo, new_hex_id, now_iso

Records = dict[str, dict[str, Any]]
VALIDATION = 1004
SUPPORTED_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS")
HOSTNAME_TYPES = ("CNAME", "MX", "NS")
PROXIABLE_TYPES = ("A", "AAAA", "CNAME")
ALL_TYPES = (
    *SUPPORTED_TYPES,
    *("CAA", "CERT", "DNSKEY", "DS", "HTTPS", "LOC", "NAPTR", "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "URI"),
)
UNPROXIABLE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip
LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
TAG = re.compile(r"^([A-Za-z0-9_-]{1,32}):(.{0,100})$", re.S)


def quota(zone: ZoneInfo) -> int:
    if zone.seed.record_quota is not None:
        return zone.seed.record_quota
    return 3500 if zone.paid else 200


def batch_limit(zone: ZoneInfo) -> int:
    return 3500 if zone.paid else 200


def not_found() -> ApiError:
    return ApiError(404, 81044, "Record does not exist.")


def _invalid(code: int, message: str) -> ApiError:
    return ApiError(400, code, message)


def normalise_name(zone: ZoneInfo, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid(9000, "DNS name is invalid.")
    name = raw.strip().lower().rstrip(".")
    if name == "@":
        name = zone.name
    elif name != zone.name and not name.endswith("." + zone.name):
        if "." in name:
            raise _invalid(9000, f"DNS name is invalid: {name} is not in zone {zone.name}.")
        name = f"{name}.{zone.name}"
    labels = name.split(".")
    if len(name) > 253 or not all(LABEL.match(x) or (i == 0 and x == "*") for i, x in enumerate(labels)):
        raise _invalid(9000, "DNS name is invalid.")
    return name


def _hostname(raw: str, rtype: str) -> str:
    host = raw.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip or not host or len(host) > 253 or not all(LABEL.match(x) for x in host.split(".")):
        raise _invalid(9005, f"Content for {rtype} record is invalid.")
    return host


def _content(rtype: str, raw: Any) -> str:
    if not isinstance(raw, str) or raw == "":
        raise _invalid(9005, f"Content for {rtype} record is invalid.")
    if rtype == "A":
        try:
            return str(ipaddress.IPv4Address(raw))
        except ValueError:
            raise _invalid(9005, "Content for A record must be a valid IPv4 address.") from None
    if rtype == "AAAA":
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise _invalid(9005, "Content for AAAA record must be a valid IPv6 address.") from None
    if rtype in HOSTNAME_TYPES:
        return _hostname(raw, rtype)
    if len(raw) > 4096:
        raise _invalid(9005, "Content for TXT record is too long.")
    return raw


def _proxiable(rtype: str, content: str) -> bool:
    if rtype == "CNAME":
        return True
    if rtype in ("A", "AAAA"):
        address = ipaddress.ip_address(content)
        return not any(address in net for net in UNPROXIABLE if net.version == address.version)
    return False


def _ttl(raw: Any) -> int:
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and float(raw).is_integer()
    if not ok or not (int(raw) == 1 or 60 <= int(raw) <= 86400):
        raise _invalid(9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
    return int(raw)


def _comment(zone: ZoneInfo, raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _invalid(VALIDATION, "DNS record comment must be a string.")
    limit = 500 if zone.paid else 100
    if len(raw) > limit:
        raise _invalid(9313, f"DNS record comment exceeds the maximum length of {limit} characters.")
    if "\n" in raw or "\r" in raw:
        raise _invalid(VALIDATION, "DNS record comment must not contain newline characters.")
    return raw


def _tags(zone: ZoneInfo, raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise _invalid(VALIDATION, "DNS record tags must be a list of strings.")
    limit = 20 if zone.paid else 0
    if len(raw) > limit:
        raise _invalid(9300, f"DNS record has {len(raw)} tags, exceeding the quota of {limit}.")
    names = set()
    for tag in raw:
        found = TAG.match(tag)
        if found is None or "\n" in tag:
            raise _invalid(9301, f"Invalid DNS record tag {tag!r}: tags must look like name:value.")
        if found.group(1).lower() in names:
            raise _invalid(9301, f"Duplicate DNS record tag name {found.group(1)!r}.")
        names.add(found.group(1).lower())
    return list(raw)


def build(zone: ZoneInfo, fields: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a full set of record fields; ``previous`` keeps identity and timestamps."""
    raw_type = fields.get("type")
    if not isinstance(raw_type, str) or raw_type.upper() not in ALL_TYPES:
        raise _invalid(9020, "Invalid DNS record type.")
    rtype = raw_type.upper()
    if rtype not in SUPPORTED_TYPES:
        raise _invalid(9020, f"Record type {rtype} is not supported by the sandbox ({', '.join(SUPPORTED_TYPES)}).")
    name = normalise_name(zone, fields.get("name"))
    content = _content(rtype, fields.get("content"))
    if rtype == "CNAME" and content == name:
        raise _invalid(9039, "CNAME content cannot reference itself.")
    proxied = fields.get("proxied", False)
    if proxied is None:
        proxied = False
    if not isinstance(proxied, bool):
        raise _invalid(VALIDATION, "proxied must be a boolean.")
    proxiable = _proxiable(rtype, content)
    if proxied and rtype not in PROXIABLE_TYPES:
        raise _invalid(9004, "This record type cannot be proxied.")
    if proxied and not proxiable:
        raise _invalid(9003, f"Target {content} is not allowed for a proxied record.")
    ttl = _ttl(fields.get("ttl", 1))
    settings = fields.get("settings") or {}
    if not isinstance(settings, dict):
        raise _invalid(VALIDATION, "settings must be an object.")
    comment = _comment(zone, fields.get("comment"))
    tags = _tags(zone, fields.get("tags"))
    now = now_iso()
    record: dict[str, Any] = {
        "id": previous["id"] if previous else new_hex_id(),
        "name": name,
        "type": rtype,
        "content": content,
        "proxiable": proxiable,
        "proxied": proxied,
        "ttl": 1 if proxied else ttl,
        "settings": dict(settings),
        "meta": {},
        "comment": comment,
        "tags": tags,
        "created_on": previous["created_on"] if previous else now,
        "modified_on": now,
    }
    if rtype == "MX":
        priority = fields.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 65535:
            raise _invalid(VALIDATION, "MX records need a priority between 0 and 65535.")
        record["priority"] = priority
    for key, value in (("comment", comment), ("tags", tags)):
        old = previous.get(key) if previous else None
        if value and value != old:
            record[f"{key}_modified_on"] = now
        elif previous and f"{key}_modified_on" in previous and value:
            record[f"{key}_modified_on"] = previous[f"{key}_modified_on"]
    return record


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["type"] in HOSTNAME_TYPES or a["type"] in ("A", "AAAA"):
        same = str(a["content"]).lower() == str(b["content"]).lower()
    else:
        same = a["content"] == b["content"]
    return same and a.get("priority") == b.get("priority")


def check_conflicts(records: Records, record: dict[str, Any]) -> None:
    for other in records.values():
        if other["id"] == record["id"] or other["name"] != record["name"]:
            continue
        if other["type"] == record["type"] and _same_content(other, record):
            raise _invalid(81058, "An identical record already exists.")
    for other in records.values():
        if other["id"] == record["id"] or other["name"] != record["name"]:
            continue
        types = {other["type"], record["type"]}
        if "CNAME" not in types:
            continue
        if types <= {"A", "AAAA", "CNAME"}:
            raise _invalid(81053, "An A, AAAA, or CNAME record with that host already exists.")
        raise _invalid(81054, "A CNAME record with that host already exists.")


def create(zone: ZoneInfo, records: Records, fields: dict[str, Any]) -> dict[str, Any]:
    record = build(zone, fields, None)
    check_conflicts(records, record)
    if len(records) >= quota(zone):
        raise _invalid(81045, "Record quota exceeded.")
    records[record["id"]] = record
    return record


def existing(records: Records, record_id: Any) -> dict[str, Any]:
    """The record of that id; else 404 (an id that is not a string included)."""
    record = records.get(record_id) if isinstance(record_id, str) else None
    if record is None:
        raise not_found()
    return record


def replace(zone: ZoneInfo, records: Records, record_id: Any, fields: dict[str, Any]) -> dict[str, Any]:
    record = build(zone, fields, existing(records, record_id))
    check_conflicts(records, record)
    records[record["id"]] = record
    return record


def patch(zone: ZoneInfo, records: Records, record_id: Any, fields: dict[str, Any]) -> dict[str, Any]:
    previous = existing(records, record_id)
    merged = {k: v for k, v in previous.items() if k != "id"} | {k: v for k, v in fields.items() if k != "id"}
    return replace(zone, records, record_id, merged)


def delete(records: Records, record_id: Any) -> dict[str, Any]:
    record = existing(records, record_id)
    del records[record_id]
    return record
