"""Machine operations that numba does not express on its own, for the compiled kernels.

- `load_u64(data, i)`: the eight bytes data[i:i+8] as one little-endian uint64, in one
  unaligned load. Assembling them byte by byte (what numba emits for a loop of
  shifts) is ~4x slower, and the text hashes read every byte this way.
- `prefetch(array, i)`: asks the CPU to start fetching the cache line of array[i]. The
  language identifier knows which rows of its 28 MB table it reads next, and the
  hardware prefetcher cannot guess them.

- `copy_bytes(out, at, data, i, count)`: out[at:at+count] = data[i:i+count] as one
  llvm.memcpy. numba's slice assignment checks the two slices for overlap and copies
  element by element, ~1 GB/s on the ~200-byte runs between a JSON text's escapes.
- `bytes_between(data, i, low, high)`: which of the 32 bytes data[i:i+32] lie in low..high,
  as the low 32 bits of a uint64 (bit k = byte i + k): one vector load, compare and
  move-mask, where eight bytes at a time with SWAR arithmetic took ~5x as long.
- `pread_into(fd, out, at, count, offset)`: the C library's `pread` into out[at:at+count],
  its result returned (bytes read, 0 at the end of the file, -1 on an error). Called by
  name, so a kernel that uses it stays cacheable (a ctypes function pointer is an address
  that differs in every process, and numba will not cache it).

These take a 1-D C-contiguous numpy array and an element index and do not check bounds
(the callers keep i + 8 <= len(data) for `load_u64`, i + 32 for `bytes_between`, both
ranges inside their arrays and apart for `copy_bytes`, at + count <= len(out) for
`pread_into`; a prefetch never faults).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def load_u64(typingctx, data, index):
    if not (isinstance(data, types.Array) and data.dtype == types.uint8 and data.ndim == 1):
        return None
    signature = types.uint64(data, types.intp)

    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=1)

    return signature, codegen


@intrinsic
def prefetch(typingctx, array, index):
    if not (isinstance(array, types.Array) and array.ndim == 1):
        return None
    signature = types.void(array, types.intp)

    def codegen(context, builder, sig, args):
        values = context.make_array(sig.args[0])(context, builder, args[0])
        byte_pointer = ir.IntType(8).as_pointer()
        address = builder.bitcast(builder.gep(values.data, [args[1]]), byte_pointer)
        i32 = ir.IntType(32)
        # Named with the typed-pointer mangling; LLVM versions with opaque pointers upgrade it.
        llvm_prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read (0), high temporal locality (3), data cache (1)
        builder.call(llvm_prefetch, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def copy_bytes(typingctx, out, at, data, index, count):
    for array in (out, data):
        if not (isinstance(array, types.Array) and array.dtype == types.uint8 and array.ndim == 1):
            return None
    signature = types.void(out, types.intp, data, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        target = context.make_array(sig.args[0])(context, builder, args[0])
        source = context.make_array(sig.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(
            builder, builder.gep(target.data, [args[1]]), builder.gep(source.data, [args[3]]), args[4], context.get_constant(types.intp, 1)
        )
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def pread_into(typingctx, fd, out, at, count, offset):
    if not (isinstance(out, types.Array) and out.dtype == types.uint8 and out.ndim == 1):
        return None
    signature = types.int64(types.intp, out, types.intp, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        target = context.make_array(sig.args[1])(context, builder, args[1])
        byte_pointer = ir.IntType(8).as_pointer()
        i64 = ir.IntType(64)
        # ssize_t pread(int fd, void *buf, size_t count, off_t offset), 64-bit off_t (Linux, macOS)
        libc_pread = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [ir.IntType(32), byte_pointer, i64, i64]), "pread"
        )
        address = builder.bitcast(builder.gep(target.data, [args[2]]), byte_pointer)
        return builder.call(libc_pread, [builder.trunc(args[0], ir.IntType(32)), address, args[3], args[4]])

    return signature, codegen


@intrinsic
def bytes_between(typingctx, data, index, low, high):
    if not (isinstance(data, types.Array) and data.dtype == types.uint8 and data.ndim == 1):
        return None
    signature = types.uint64(data, types.intp, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        lanes = ir.VectorType(ir.IntType(8), 32)
        address = builder.bitcast(builder.gep(array.data, [args[1]]), lanes.as_pointer())
        x = builder.load(address, align=1)

        def splat(value):
            byte = builder.trunc(value, ir.IntType(8))
            return builder.shuffle_vector(
                builder.insert_element(ir.Constant(lanes, ir.Undefined), byte, ir.Constant(ir.IntType(32), 0)),
                ir.Constant(lanes, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 32), [0] * 32),
            )

        # low <= x <= high  <=>  x - low <= high - low, unsigned
        width = builder.sub(args[3], args[2])
        inside = builder.icmp_unsigned("<=", builder.sub(x, splat(args[2])), splat(width))
        bits = builder.bitcast(inside, ir.IntType(32))
        return builder.zext(bits, ir.IntType(64))

    return signature, codegen


def _bit_count_intrinsic(build):
    """An intrinsic uint64 -> uint64 from an llvmlite builder method (ctpop, cttz, ctlz)."""

    @intrinsic
    def operation(typingctx, value):
        if not isinstance(value, types.Integer):
            return None
        signature = types.uint64(types.uint64)

        def codegen(context, builder, sig, args):
            (x,) = args
            return build(builder, context.cast(builder, x, sig.args[0], types.uint64))

        return signature, codegen

    return operation


popcount = _bit_count_intrinsic(lambda builder, x: builder.ctpop(x))
"""Set bits of a uint64."""
trailing_zeros = _bit_count_intrinsic(lambda builder, x: builder.cttz(x, ir.Constant(ir.IntType(1), 0)))
"""Zero bits below the lowest set bit of a uint64 (64 for 0)."""
leading_zeros = _bit_count_intrinsic(lambda builder, x: builder.ctlz(x, ir.Constant(ir.IntType(1), 0)))
"""Zero bits above the highest set bit of a uint64 (64 for 0)."""
