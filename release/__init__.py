"""The release format: what a published release holds and how its pieces are named, hashed and found.

Modules: ``fingerprint`` (PDQ perceptual hash and decoded-pixel hash of a published image, and a
``NearDuplicateIndex`` to find every copy of an image by Hamming distance).
"""
