"""Kubernetes API errors, rendered as ``kind: Status`` bodies like a real kube-apiserver.

Every error is a :class:`kmock.KubernetesError`, so kmock's own error rendering understands it too.
The ``reason`` is the machine-readable ``StatusReason`` (``NotFound``, ``AlreadyExists``, ``Conflict``,
``Invalid``, ``Gone``...), which clients such as kopf and client-go branch on.
"""

from __future__ import annotations

from typing import Any

import kmock

from chutes.sandbox.kubernetes.paths import Target


class StatusError(kmock.KubernetesError):
    """An API failure with an HTTP code, a ``StatusReason`` and a human message."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(status=status, reason=reason, message=message, details=details or {})

    def body(self) -> dict[str, Any]:
        return {
            'apiVersion': 'v1',
            'kind': 'Status',
            'metadata': {},
            'status': 'Failure',
            'message': self.message,
            'reason': self.reason,
            'details': self.details,
            'code': self.status,
        }


def _details(target: Target, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {'group': target.group, 'kind': target.plural}
    if name:
        details['name'] = name
    return details


def not_found(target: Target, name: str) -> StatusError:
    return StatusError(404, 'NotFound', f'{target.qualified} "{name}" not found', _details(target, name))


def unknown_resource() -> StatusError:
    return StatusError(404, 'NotFound', 'the server could not find the requested resource')


def already_exists(target: Target, name: str) -> StatusError:
    return StatusError(409, 'AlreadyExists', f'{target.qualified} "{name}" already exists',
                       _details(target, name))


def conflict(target: Target, name: str, why: str | None = None) -> StatusError:
    message = why or 'the object has been modified; please apply your changes to the latest version and try again'
    return StatusError(409, 'Conflict', f'Operation cannot be fulfilled on {target.qualified} "{name}": {message}',
                       _details(target, name))


def invalid(target: Target, name: str | None, message: str) -> StatusError:
    return StatusError(422, 'Invalid', f'{target.qualified} "{name or ""}" is invalid: {message}',
                       _details(target, name))


def bad_request(message: str) -> StatusError:
    return StatusError(400, 'BadRequest', message)


def method_not_allowed(verb: str, target: Target) -> StatusError:
    return StatusError(405, 'MethodNotAllowed', f'{verb} is not supported on resources of kind "{target.plural}"',
                       _details(target, None))


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - '
                       f'accepted media types include: application/json, application/json-patch+json, '
                       f'application/merge-patch+json, application/strategic-merge-patch+json (built-in '
                       f'resources only), application/apply-patch+yaml (got {content_type!r})')


def gone(resource_version: int) -> StatusError:
    return StatusError(410, 'Expired', f'too old resource version: {resource_version}')
