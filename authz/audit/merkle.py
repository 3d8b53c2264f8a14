"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification (pure, stdlib only).

Leaves are numbered from 0. A *perfect node* ``(level, index)`` is the root of the complete
subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``; every hash the tree ever needs
is a fold of such nodes, so storing them (about two per leaf, each written once) keeps appends
O(1) amortised and lets a proof read O(log n) of them, never the whole tree.

Proof generation works on *ranges*: :func:`inclusion_ranges` and :func:`consistency_ranges`
follow the RFC's PATH and SUBPROOF recursions and return the leaf ranges whose MTH the proof
lists; :func:`perfect_nodes` names the stored nodes those ranges fold from, so a caller can fetch
them all in one query and then call :func:`range_hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)
NodeGetter = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not verify, or a request for one that cannot exist."""


def leaf_hash(record: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect(start: int, end: int) -> Node | None:
    size = end - start
    if size > 0 and size & (size - 1) == 0 and start % size == 0:
        return size.bit_length() - 1, start // size
    return None


def perfect_nodes(start: int, end: int) -> list[Node]:
    """The perfect nodes whose RFC fold is MTH(D[start:end]), left to right."""
    if end <= start:
        return []
    nodes: list[Node] = []
    while True:
        node = _perfect(start, end)
        if node is not None:
            nodes.append(node)
            return nodes
        k = split(end - start)
        left = _perfect(start, start + k)
        if left is None:  # not a range the RFC recursion produces; fold both halves
            return [*nodes, *perfect_nodes(start, start + k), *perfect_nodes(start + k, end)]
        nodes.append(left)
        start += k


def range_hash(get: NodeGetter, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from stored perfect nodes (the empty range hashes to SHA-256(""))."""
    if end <= start:
        return EMPTY_ROOT
    nodes = perfect_nodes(start, end)
    result = get(*nodes[-1])
    for node in reversed(nodes[:-1]):
        result = node_hash(get(*node), result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) as leaf ranges, nearest sibling first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return list(reversed(ranges))


def consistency_ranges(first: int, second: int) -> list[Range]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true) as leaf ranges."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    ranges: list[Range] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    return list(reversed(ranges))


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    """Every perfect node the given ranges fold from."""
    return {node for start, end in ranges for node in perfect_nodes(start, end)}


def prove(get: NodeGetter, ranges: Sequence[Range]) -> list[bytes]:
    return [range_hash(get, start, end) for start, end in ranges]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to (raises if malformed)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` in the tree ``root``."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ProofError` unless tree ``first`` prefixes ``second``."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("equal sizes with different roots")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: m is a power of two
        path.insert(0, first_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root or sr != second_root:
        raise ProofError("consistency proof does not lead to both roots")


class Frontier:
    """The compact range of a growing tree: one perfect-node hash per set bit of its size.

    :meth:`append` is O(1) amortised and reports the perfect nodes it completes, so a caller can
    store them; :meth:`root` folds the frontier in O(log n).
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError("a frontier holds one hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)  # largest subtree first

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; return the perfect nodes completed, the leaf itself first."""
        index = self.size
        made = [((0, index), leaf)]
        value, level = leaf, 0
        while index & 1:
            value = node_hash(self.hashes.pop(), value)
            level += 1
            index >>= 1
            made.append(((level, index), value))
        self.hashes.append(value)
        self.size += 1
        return made

    def add(self, leaf: bytes) -> None:
        """Like :meth:`append` without reporting nodes (the offline verifier's hot loop)."""
        index = self.size
        hashes = self.hashes
        value = leaf
        while index & 1:
            value = hashlib.sha256(NODE_PREFIX + hashes.pop() + value).digest()
            index >>= 1
        hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for value in reversed(self.hashes[:-1]):
            result = node_hash(value, result)
        return result

    @staticmethod
    def nodes(size: int) -> list[Node]:
        """The perfect nodes a frontier of ``size`` holds, largest first."""
        return perfect_nodes(0, size) if size else []
