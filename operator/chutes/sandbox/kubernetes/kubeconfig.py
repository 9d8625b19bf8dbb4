"""A kubeconfig file pointing at the sandbox (plain HTTP, bearer-token auth that accepts any token)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = 'kube-sandbox'
USER_TOKEN = 'kube-sandbox'  # the token of `KubeSandbox.kubeconfig`: tests, users, the demo
OPERATOR_TOKEN = 'chutes-operator'  # the token of `KubeSandbox.operator_kubeconfig`: the operator alone


def write_kubeconfig(path: Path, url: str, *, namespace: str = 'default', token: str = USER_TOKEN) -> Path:
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': CONTEXT, 'cluster': {'server': url}}],
        'users': [{'name': CONTEXT, 'user': {'token': token}}],
        'contexts': [{'name': CONTEXT, 'context': {'cluster': CONTEXT, 'user': CONTEXT, 'namespace': namespace}}],
        'current-context': CONTEXT,
        'preferences': {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding='utf-8')
    return path
