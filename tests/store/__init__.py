"""The store conformance suite: every operation of ``tgdaemon.store.api.Store`` and every rule of design
sections 4 and 5, written once against the interface and run on both drivers (see conftest.py).

A package, so that its conftest and its modules never collide with the ones of the same name in tests/.
"""
