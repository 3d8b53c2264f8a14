"""RFC 9162 Merkle hashing and proofs, against known answers and an independent computation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.audit import merkle

# The RFC 6962 test leaves used by the certificate-transparency implementations.
LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
          bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(data: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, written out recursively and independently of the module."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH, recursively."""
    if len(data) <= 1:
        return []
    k = 1
    while k * 2 < len(data):
        k *= 2
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF, recursively."""
    n = len(data)
    if m == n:
        return [] if complete else [mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, data[:k], complete), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


def build(data: list[bytes]) -> tuple[merkle.Frontier, merkle.NodeGetter]:
    frontier: merkle.Frontier = merkle.Frontier()
    store: dict[merkle.Node, bytes] = {}
    for item in data:
        store.update(frontier.append(merkle.leaf_hash(item)))
    return frontier, lambda level, idx: store[(level, idx)]


def test_empty_tree_and_known_roots():
    assert merkle.Frontier().root().hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    frontier = merkle.Frontier()
    for n, leaf in enumerate(LEAVES, 1):
        frontier.add(merkle.leaf_hash(leaf))
        assert frontier.root().hex() == ROOTS[n - 1]
        assert mth(LEAVES[:n]).hex() == ROOTS[n - 1]


def test_known_inclusion_and_consistency_proofs():
    _frontier, get = build(LEAVES)
    proof = merkle.prove(get, merkle.inclusion_ranges(0, 8))
    assert [p.hex() for p in proof] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
    consistency = merkle.prove(get, merkle.consistency_ranges(1, 8))
    assert consistency == proof  # from size 1 the path of leaf 0 is the consistency proof
    assert merkle.prove(get, merkle.consistency_ranges(4, 8)) == [mth(LEAVES[4:8])]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33])
def test_proofs_match_the_rfc_recursion_and_verify(size):
    data = [f"entry {i}".encode() for i in range(size)]
    frontier, get = build(data)
    root = mth(data)
    assert frontier.root() == root
    assert merkle.range_hash(get, 0, size) == root
    for m in range(size):
        proof = merkle.prove(get, merkle.inclusion_ranges(m, size))
        assert proof == path(m, data)
        merkle.verify_inclusion(m, size, merkle.leaf_hash(data[m]), proof, root)
    for m in range(1, size + 1):
        proof = merkle.prove(get, merkle.consistency_ranges(m, size))
        assert proof == subproof(m, data, True)
        merkle.verify_consistency(m, size, mth(data[:m]), root, proof)


@given(st.integers(1, 70), st.data())
def test_tampered_proofs_never_verify(size, draw):
    data = [bytes([i]) for i in range(size)]
    _frontier, get = build(data)
    root = mth(data)
    m = draw.draw(st.integers(0, size - 1))
    proof = merkle.prove(get, merkle.inclusion_ranges(m, size))
    leaf = merkle.leaf_hash(data[m])
    bad_proofs = [proof + [root], proof[:-1]] if proof else [[root]]
    if proof:
        flipped = list(proof)
        flipped[0] = bytes(32)
        bad_proofs.append(flipped)
    for bad in bad_proofs:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(m, size, leaf, bad, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(m, size, merkle.leaf_hash(b"other"), proof, root)
    first = draw.draw(st.integers(1, size))
    cproof = merkle.prove(get, merkle.consistency_ranges(first, size))
    if first < size:
        with pytest.raises(merkle.ProofError):  # the second size must be fully consumed
            merkle.verify_consistency(first, size, mth(data[:first]), root, [*cproof, root])
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, size, mth(data[:first]), bytes(32), cproof)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, size, bytes(32), root, cproof)


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_impossible_proofs_are_refused(index, size):
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_ranges(index, size)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(4, 3)
