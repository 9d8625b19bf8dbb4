"""An in-process Kubernetes API for tests, demos and dry runs: kmock's emulator made faithful.

``KubeSandbox`` serves a ``FaithfulEmulator`` from its own thread and writes a kubeconfig for it;
``crd_resources`` turns a CustomResourceDefinition manifest into kmock discovery entries.
Run it standalone with ``python -m chutes.sandbox.kubernetes --port N [--crds DIR]``.
"""

from chutes.sandbox.kubernetes.audit import ApiCall
from chutes.sandbox.kubernetes.discovery import crd_resources
from chutes.sandbox.kubernetes.emulator import FaithfulEmulator
from chutes.sandbox.kubernetes.kubeconfig import OPERATOR_TOKEN, USER_TOKEN
from chutes.sandbox.kubernetes.thread import KubeSandbox

__all__ = ['OPERATOR_TOKEN', 'USER_TOKEN', 'ApiCall', 'FaithfulEmulator', 'KubeSandbox', 'crd_resources']
