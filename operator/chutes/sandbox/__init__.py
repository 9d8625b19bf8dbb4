"""Offline stand-ins for the outside world: a strict Cloudflare API emulator and a Kubernetes emulator.

They are part of the product: ``make demo`` and ``chutes plan`` run the operator against them.
"""
