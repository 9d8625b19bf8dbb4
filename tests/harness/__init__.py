"""What the tests stand on, and no tests: the emulators as fixtures, the worlds a test drives (a front door's
objects on both emulators, with the operator running in-process), one ``wait_for``, and the record of the
operator's Kubernetes API calls that the chart's RBAC check reads.

Test modules import from here (``from harness.gateways import World``), never from one another.
"""
