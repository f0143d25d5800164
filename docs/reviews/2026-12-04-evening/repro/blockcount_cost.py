"""blockcount.fields_over against hpack's decoder: agreement and CPU on crafted blocks."""
import sys, time; sys.path.insert(0, ".")
import hpack
from worker.h2.blockcount import fields_over, CRUMBS_AND_PSEUDO
MOST = 100 + CRUMBS_AND_PSEUDO

def timed(f, *a):
    t = time.process_time()
    try:
        r = f(*a)
    except Exception as e:
        r = type(e).__name__
    return r, (time.process_time() - t) * 1000

def decode(block):
    d = hpack.Decoder(); d.max_header_list_size = 65536
    return len(d.decode(block, raw=True))

blocks = {
    "1 MiB of table size updates (0x20)": b"\x20" * (1 << 20),
    "1 MiB of size updates, then 400 indexed fields": b"\x20" * (1 << 20) + b"\x82" * 400,
    "364 indexed fields": b"\x82" * 364,
    "365 indexed fields": b"\x82" * 365,
    "400 fields, 5-byte overlong string length first": b"\x00\x7f\x80\x80\x80\x80\x00" + b"a" * 127 + b"\x00" + b"\x82" * 400,
    "literal new name, Huffman flag, 400x": (b"\x00\x81\xff\x81\xff") * 400,
}
for label, block in blocks.items():
    over, t1 = timed(fields_over, block, MOST)
    dec, t2 = timed(decode, block)
    print(f"{label}: fields_over={over} ({t1:.1f} ms); hpack decode -> {dec} ({t2:.1f} ms)")
