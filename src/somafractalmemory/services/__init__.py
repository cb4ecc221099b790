"""Core services: each concern of the memory system in its own module.

``core.SomaFractalMemoryEnterprise`` is a facade over these; every service
receives its ports (``interfaces.storage``) from the factory.
"""
