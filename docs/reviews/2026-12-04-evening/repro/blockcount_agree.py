"""fields_over against the number of fields hpack decodes, on random encoder output
(static/dynamic indexing, Huffman or not, never-indexed, long values, table size updates)."""
import random, sys; sys.path.insert(0, ".")
import hpack
from hpack import NeverIndexedHeaderTuple
from worker.h2.blockcount import fields_over
rnd = random.Random(7); bad = 0
for it in range(300):
    enc, dec = hpack.Encoder(), hpack.Decoder(); dec.max_header_list_size = 1 << 30
    if rnd.random() < 0.3:
        enc.header_table_size = rnd.choice([0, 256, 4096])
    fields = []
    for _ in range(rnd.randint(0, 60)):
        name = rnd.choice([b"x-a", b"cookie", b"user-agent", b":path", b"n" * rnd.randint(1, 300)])
        value = bytes(rnd.randint(32, 126) for _ in range(rnd.choice([0, 1, 5, 130, 2000])))
        fields.append(NeverIndexedHeaderTuple(name, value) if rnd.random() < 0.1 else (name, value))
    block = enc.encode(fields, huffman=rnd.random() < 0.5)
    n = len(dec.decode(block, raw=True))
    for most in (0, 1, n - 1, n, n + 1):
        if most >= 0 and fields_over(block, most) != (n > most):
            bad += 1; print("disagree", it, n, most)
print("blocks checked: 300; disagreements:", bad)
