# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled part of ``avro_projection``: Avro binary to Python values, reading only what is asked.

A schema and the fields a worker asks for are compiled once (``avro_projection.reader_for``)
into a tree of nodes; each node reads its type's value or skips over it. A skipped
string or bytes is a jump over its length, a skipped double eight bytes, a skipped
record its fields' skips: nothing is built for what the worker did not ask for.
What a node builds is what fastavro builds for the same bytes (records as dicts,
unions as their branch's value, enums as their symbol, logical types by fastavro's
own converters), which the property tests check against fastavro.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t, uint32_t
from libc.string cimport memcpy


# The items of a type that takes no bytes one body may hold beyond one item a
# byte: the SDK's bound (see Reader.block), so that both refuse the same bodies.
from alert_worker.codecs.empty_items import ZERO_SIZE_ITEMS


class AvroBodyError(ValueError):
    """The bytes are not a value of the schema (truncated, a bad length, union branch or enum symbol)."""


cdef class Reader:
    cdef const unsigned char* data
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef int64_t items_left  # the items of arrays and maps this body may still hold (see block)
    cdef bytes keep  # the buffer's owner

    cdef inline int need(self, Py_ssize_t n) except -1:
        if n < 0 or n > self.end - self.pos:
            raise AvroBodyError(f"the body ends {n} bytes too early at byte {self.pos}" if n >= 0
                                else f"a negative length at byte {self.pos}")
        return 0

    cdef inline int advance(self, Py_ssize_t n) except -1:
        self.need(n)
        self.pos += n
        return 0

    cdef inline int64_t varint(self) except? -1:
        cdef uint64_t n = 0
        cdef int shift = 0
        cdef unsigned char b
        while True:
            if self.pos >= self.end:
                raise AvroBodyError(f"the body ends inside a number at byte {self.pos}")
            b = self.data[self.pos]
            self.pos += 1
            if shift < 64:
                n |= (<uint64_t>(b & 0x7F)) << shift
            shift += 7
            if not (b & 0x80):
                break
            if shift >= 70:
                raise AvroBodyError(f"a number longer than 10 bytes at byte {self.pos}")
        return <int64_t>((n >> 1) ^ (-(n & 1)))

    cdef inline Py_ssize_t length(self) except -1:
        cdef int64_t n = self.varint()
        if n < 0:
            raise AvroBodyError(f"a negative length ({n}) at byte {self.pos}")
        self.need(n)
        return <Py_ssize_t>n

    cdef inline int64_t block(self) except? -1:
        """The count of the next block of an array or map (a negative count is followed by the block's size).

        Every item takes a byte at least, but for the items of a type that takes
        none (null, a fixed of size 0, a record of those): a few bytes can claim
        billions of those, which would take the memory and the time of the
        process. So the items of all the blocks of one body count against a
        budget of the body's length plus ZERO_SIZE_ITEMS; a count beyond it
        is refused.
        """
        cdef int64_t n = self.varint()
        if n < 0:
            self.varint()  # the block's size in bytes
            n = -n
        if n < 0 or n > self.items_left:  # -n of the most negative count is itself
            raise AvroBodyError(f"a block of {n} items at byte {self.pos}: more than the {self.end} bytes "
                                f"of the value can hold (one item a byte and {ZERO_SIZE_ITEMS} of a type "
                                f"that takes no bytes), the bytes are damaged")
        self.items_left -= n
        return n


cdef class Node:
    cdef object read(self, Reader r):
        raise NotImplementedError

    cdef int skip(self, Reader r) except -1:
        self.read(r)
        return 0


cdef class NullNode(Node):
    cdef object read(self, Reader r):
        return None

    cdef int skip(self, Reader r) except -1:
        return 0


cdef class BooleanNode(Node):
    cdef object read(self, Reader r):
        r.advance(1)
        return r.data[r.pos - 1] != 0

    cdef int skip(self, Reader r) except -1:
        return r.advance(1)


cdef class LongNode(Node):
    cdef object read(self, Reader r):
        return r.varint()

    cdef int skip(self, Reader r) except -1:
        r.varint()
        return 0


cdef class FloatNode(Node):
    cdef object read(self, Reader r):
        cdef float f
        r.need(4)
        memcpy(&f, r.data + r.pos, 4)  # little-endian, as Avro and this machine are
        r.pos += 4
        return <double>f

    cdef int skip(self, Reader r) except -1:
        return r.advance(4)


cdef class DoubleNode(Node):
    cdef object read(self, Reader r):
        cdef double d
        r.need(8)
        memcpy(&d, r.data + r.pos, 8)
        r.pos += 8
        return d

    cdef int skip(self, Reader r) except -1:
        return r.advance(8)


cdef class BytesNode(Node):
    cdef object read(self, Reader r):
        cdef Py_ssize_t n = r.length()
        value = PyBytes_FromStringAndSize(<const char*>(r.data + r.pos), n)
        r.pos += n
        return value

    cdef int skip(self, Reader r) except -1:
        r.pos += r.length()
        return 0


cdef class StringNode(BytesNode):
    """Skipped as bytes are (not checked to be UTF-8); read as UTF-8."""
    cdef object read(self, Reader r):
        cdef Py_ssize_t n = r.length()
        value = PyUnicode_DecodeUTF8(<const char*>(r.data + r.pos), n, "strict")
        r.pos += n
        return value


cdef class FixedNode(Node):
    cdef Py_ssize_t size

    def __init__(self, Py_ssize_t size):
        self.size = size

    cdef object read(self, Reader r):
        r.need(self.size)
        value = PyBytes_FromStringAndSize(<const char*>(r.data + r.pos), self.size)
        r.pos += self.size
        return value

    cdef int skip(self, Reader r) except -1:
        return r.advance(self.size)


cdef class EnumNode(Node):
    cdef tuple symbols

    def __init__(self, symbols):
        self.symbols = tuple(symbols)

    cdef object read(self, Reader r):
        cdef int64_t i = r.varint()
        if i < 0 or i >= len(self.symbols):
            raise AvroBodyError(f"enum symbol {i} of {len(self.symbols)} at byte {r.pos}")
        return self.symbols[i]

    cdef int skip(self, Reader r) except -1:
        self.read(r)
        return 0


cdef class UnionNode(Node):
    cdef list branches

    def __init__(self, branches):
        self.branches = list(branches)

    cdef inline Node branch(self, Reader r):
        cdef int64_t i = r.varint()
        if i < 0 or i >= len(self.branches):
            raise AvroBodyError(f"union branch {i} of {len(self.branches)} at byte {r.pos}")
        return <Node>self.branches[i]

    cdef object read(self, Reader r):
        return self.branch(r).read(r)

    cdef int skip(self, Reader r) except -1:
        return self.branch(r).skip(r)


cdef class ArrayNode(Node):
    cdef Node items

    def __init__(self, Node items):
        self.items = items

    cdef object read(self, Reader r):
        cdef list out = []
        cdef int64_t n, i
        cdef Node items = self.items
        while True:
            n = r.block()
            if n == 0:
                return out
            for i in range(n):
                PyList_Append(out, items.read(r))

    cdef int skip(self, Reader r) except -1:
        cdef int64_t n, i
        cdef Node items = self.items
        while True:
            n = r.block()
            if n == 0:
                return 0
            for i in range(n):
                items.skip(r)


cdef class MapNode(Node):
    """A map read whole (``wanted`` None), or only the keys a projection names, in its order."""
    cdef Node values
    cdef dict wanted  # key -> the Node for its value, or None: every key
    cdef tuple order

    def __init__(self, Node values, wanted=None):
        self.values = values
        self.wanted = wanted
        self.order = tuple(wanted) if wanted is not None else ()

    cdef object read(self, Reader r):
        cdef dict out = {}
        cdef int64_t n, i
        cdef Py_ssize_t k
        cdef Node node
        while True:
            n = r.block()
            if n == 0:
                break
            for i in range(n):
                k = r.length()
                key = PyUnicode_DecodeUTF8(<const char*>(r.data + r.pos), k, "strict")
                r.pos += k
                if self.wanted is None:
                    out[key] = self.values.read(r)
                else:
                    node = self.wanted.get(key)
                    if node is None:
                        self.values.skip(r)
                    else:
                        out[key] = node.read(r)
        if self.wanted is None:
            return out
        return {key: out[key] for key in self.order if key in out}

    cdef int skip(self, Reader r) except -1:
        cdef int64_t n, i
        while True:
            n = r.block()
            if n == 0:
                return 0
            for i in range(n):
                r.pos += r.length()
                self.values.skip(r)


cdef class RecordNode(Node):
    """A record's fields in the writer's order; each kept one lands in its slot of the output's order."""
    cdef list fields  # a Node per field of the writer's schema
    cdef Py_ssize_t* slots  # per field: its place in the output, or -1 to skip it
    cdef tuple names  # the output's keys, in its order
    cdef Py_ssize_t kept
    cdef Py_ssize_t count

    def __init__(self, fields, slots, names):
        self.fields = list(fields)
        self.count = len(self.fields)
        if len(slots) != self.count:
            raise ValueError("a slot per field")
        self.slots = <Py_ssize_t*>PyMem_Malloc(max(self.count, 1) * sizeof(Py_ssize_t))
        if self.slots is NULL:
            raise MemoryError()
        for i, slot in enumerate(slots):
            self.slots[i] = slot
        self.names = tuple(names)
        self.kept = len(self.names)

    def __dealloc__(self):
        PyMem_Free(self.slots)

    cdef object read(self, Reader r):
        cdef Py_ssize_t i, slot
        cdef list values = [None] * self.kept
        cdef dict out = {}
        for i in range(self.count):
            slot = self.slots[i]
            if slot < 0:
                (<Node>self.fields[i]).skip(r)
            else:
                values[slot] = (<Node>self.fields[i]).read(r)
        for i in range(self.kept):
            PyDict_SetItem(out, self.names[i], values[i])
        return out

    cdef int skip(self, Reader r) except -1:
        cdef Py_ssize_t i
        for i in range(self.count):
            (<Node>self.fields[i]).skip(r)
        return 0


cdef class ConvertedNode(Node):
    """A logical type: the inner value, converted by fastavro's own reader for it."""
    cdef Node inner
    cdef object convert
    cdef object schema

    def __init__(self, Node inner, convert, schema):
        self.inner = inner
        self.convert = convert
        self.schema = schema

    cdef object read(self, Reader r):
        return self.convert(self.inner.read(r), self.schema, self.schema)

    cdef int skip(self, Reader r) except -1:
        return self.inner.skip(r)


def read_body(Node node, bytes data, Py_ssize_t start):
    """``(value, end)``: the value of ``node`` in ``data`` from byte ``start``, and the byte after it."""
    cdef Reader r = Reader.__new__(Reader)
    r.keep = data
    r.data = <const unsigned char*>PyBytes_AS_STRING(data)
    r.end = PyBytes_GET_SIZE(data)
    if start < 0 or start > r.end:
        raise AvroBodyError(f"no body at byte {start} of {r.end}")
    r.pos = start
    r.items_left = (r.end - start) + ZERO_SIZE_ITEMS
    value = node.read(r)
    return value, r.pos


