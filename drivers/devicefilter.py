"""The cgroup v2 device filter: an eBPF program, generated here and loaded with bpf(2).

cgroup v1 has a devices controller with devices.allow and devices.deny files (drivers/cgroups.py
writes Docker's rules there). cgroup v2 has none: instead, the kernel runs the eBPF program of
type BPF_PROG_TYPE_CGROUP_DEVICE attached to a process's cgroup each time that process makes
(mknod) or opens a device node, and refuses with EPERM when it returns 0. runc generates that
program from the same rules (libcontainer/cgroups/devices/devicefilter.go, ebpf_linux.go); this
module does the same with struct.pack and one system call.

The rules are Docker's v1 lines, (allow, "c 1:3 rwm"), applied in order the way the v1 kernel
applies them (emulate): an "a" rule resets everything to deny-all or allow-all, and the rules
after it are exceptions to that default. The program then tests the exceptions one by one:

    r2 = ctx->access_type & 0xffff      device type: 1 block, 2 char
    r3 = ctx->access_type >> 16         access: 1 mknod, 2 read, 4 write
    r4 = ctx->major;  r5 = ctx->minor
    for each exception:  if type, access, major and minor match: return the exception's verdict
    return the default

On a deny-all default an exception allows when it grants every access asked for (as v1's
match_exception); on an allow-all default it denies when it names any of them (v1's partial
match). Jumps in eBPF are relative, so each exception's block jumps to the next one past its
own end; the instructions are struct bpf_insn: u8 code, u8 dst:4 src:4, s16 offset, s32 imm.

The program is attached to the container's cgroup directory with BPF_PROG_ATTACH and stays
there until the cgroup is removed, so no descriptor needs to outlive the attach.
"""
import ctypes
import errno
import os
import struct

from drivers import linux

# bpf(2) commands, program and attach types (linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6

# bpf_cgroup_dev_ctx's values.
DEVICE_TYPES = {"b": 1, "c": 2}
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}
ALL_ACCESS = 7

# The eBPF opcodes the program uses (linux/bpf_common.h, linux/bpf.h).
_LDX_MEM_W = 0x61     # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54   # dst &= imm
_ALU32_RSH_K = 0x74   # dst >>= imm
_ALU32_MOV_X = 0xBC   # dst = src
_ALU64_MOV_K = 0xB7   # dst = imm
_JMP_JEQ_K = 0x15     # if dst == imm: pc += off
_JMP_JNE_K = 0x55     # if dst != imm: pc += off
_EXIT = 0x95

_LICENSE = b"Apache"
_LOG_SIZE = 64 * 1024


class DeviceFilterError(OSError):
    """The kernel refused the program or its attachment."""


def emulate(rules):
    """The effect of v1 device rules, applied in order: (default_allow, exceptions), where an
    exception is [type, major, minor, access bits] (type "a" or major/minor None: any)."""
    default_allow, exceptions = False, []
    for allow, rule in rules:
        kind, major, minor, access = parse_rule(rule)
        if kind == "a" and major is None and minor is None and access == ALL_ACCESS:
            default_allow, exceptions = allow, []
            continue
        same = [e for e in exceptions if e[:3] == [kind, major, minor]]
        if allow != default_allow:   # an exception to the default: add its access
            if same:
                same[0][3] |= access
            else:
                exceptions.append([kind, major, minor, access])
        else:                        # back to the default: take the access away
            for exception in same:
                exception[3] &= ~access
            exceptions = [e for e in exceptions if e[3]]
    return default_allow, exceptions


def parse_rule(rule):
    """"c 1:3 rwm" -> ("c", 1, 3, 7); "a" -> ("a", None, None, 7); "*" is None."""
    fields = rule.split()
    kind = fields[0]
    if kind not in ("a", "b", "c"):
        raise ValueError("invalid device rule %r" % rule)
    if len(fields) == 1:
        return kind, None, None, ALL_ACCESS
    major, _, minor = fields[1].partition(":")
    access = 0
    for letter in fields[2] if len(fields) > 2 else "rwm":
        access |= ACCESS_BITS[letter]
    return kind, _number(major), _number(minor), access


def _number(text):
    return None if text == "*" else int(text)


def program(rules):
    """The eBPF program for these rules, as the bytes of its instructions."""
    default_allow, exceptions = emulate(rules)
    code = [_insn(_LDX_MEM_W, 2, 1, 0), _insn(_ALU32_AND_K, 2, imm=0xFFFF),
            _insn(_LDX_MEM_W, 3, 1, 0), _insn(_ALU32_RSH_K, 3, imm=16),
            _insn(_LDX_MEM_W, 4, 1, 4), _insn(_LDX_MEM_W, 5, 1, 8)]
    for kind, major, minor, access in exceptions:
        code += _exception_block(kind, major, minor, access, verdict=0 if default_allow else 1)
    code += [_insn(_ALU64_MOV_K, 0, imm=1 if default_allow else 0), _insn(_EXIT)]
    return b"".join(code)


def _exception_block(kind, major, minor, access, verdict):
    """Test one exception; every failed test jumps past the block (labels resolved below)."""
    tests = []
    if kind != "a":
        tests.append([(_JMP_JNE_K, 2, DEVICE_TYPES[kind])])
    if verdict == 1 and access != ALL_ACCESS:   # every access asked for must be granted
        tests.append([(_ALU32_MOV_X, 1, 3), (_ALU32_AND_K, 1, ~access & ALL_ACCESS),
                      (_JMP_JNE_K, 1, 0)])
    elif verdict == 0 and access != ALL_ACCESS:  # any access named is denied
        tests.append([(_ALU32_MOV_X, 1, 3), (_ALU32_AND_K, 1, access), (_JMP_JEQ_K, 1, 0)])
    if major is not None:
        tests.append([(_JMP_JNE_K, 4, major)])
    if minor is not None:
        tests.append([(_JMP_JNE_K, 5, minor)])
    flat = [step for test in tests for step in test] + [(_ALU64_MOV_K, 0, verdict), (_EXIT, 0, 0)]
    block = []
    for at, (op, register, value) in enumerate(flat):
        if op in (_JMP_JNE_K, _JMP_JEQ_K):
            block.append(_insn(op, register, off=len(flat) - at - 1, imm=value))
        elif op == _ALU32_MOV_X:
            block.append(_insn(op, register, value))
        else:
            block.append(_insn(op, register, imm=value))
    return block


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def load(rules):
    """BPF_PROG_LOAD: a descriptor for the program; DeviceFilterError with the verifier's log."""
    instructions = program(rules)
    code = ctypes.create_string_buffer(instructions, len(instructions))
    license_text = ctypes.create_string_buffer(_LICENSE)
    try:
        return _load(code, len(instructions) // 8, license_text, None)
    except OSError as err:
        log = ctypes.create_string_buffer(_LOG_SIZE)
        try:  # again, with the verifier's log, only to say why
            return _load(code, len(instructions) // 8, license_text, log)
        except OSError:
            raise DeviceFilterError(err.errno, "cgroups: loading the device filter: %s: %s" % (
                os.strerror(err.errno).lower(), log.value.decode(errors="replace").strip())) \
                from None


def _load(code, count, license_text, log):
    # union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    # log_size, log_buf (the kernel reads the rest as zero).
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQIIQ", BPF_PROG_TYPE_CGROUP_DEVICE, count, ctypes.addressof(code),
        ctypes.addressof(license_text), 1 if log is not None else 0,
        ctypes.sizeof(log) if log is not None else 0,
        ctypes.addressof(log) if log is not None else 0), 40)
    return linux.bpf(BPF_PROG_LOAD, attr)


def attach(cgroup_path, rules):
    """Load the program for `rules` and attach it to the cgroup directory (replacing the one a
    crashed daemon may have left there)."""
    program_fd = load(rules)
    try:
        cgroup_fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(
                struct.pack("<IIII", cgroup_fd, program_fd, BPF_CGROUP_DEVICE, 0), 16)
            linux.bpf(BPF_PROG_ATTACH, attr)
        finally:
            os.close(cgroup_fd)
    except OSError as err:
        raise DeviceFilterError(err.errno or errno.EIO, "cgroups: attaching the device filter "
                                "to %s: %s" % (cgroup_path, os.strerror(err.errno).lower())) \
            from None
    finally:
        os.close(program_fd)


def supported():
    """Whether this kernel and this process may load a device filter (a nested container
    without CAP_SYS_ADMIN, or a kernel without BPF_PROG_TYPE_CGROUP_DEVICE, may not)."""
    try:
        os.close(load([(False, "a")]))
    except OSError:
        return False
    return True
