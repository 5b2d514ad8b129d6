#!/usr/bin/env python3
"""Writes the seed corpus under testdata/fuzz/<target>/ (run from the repository root).

Every seed is built here from the RFC 7143 section 11 and SPC-4/SBC-3 layouts, not with the
project's encoders, so a seed is what a real initiator sends. The seeds are small and
meaningful: a libiscsi-style login, commands of each kind, CHAP exchanges, common CDBs.
"""
import os
import struct

ROOT = os.path.join("testdata", "fuzz")
TARGET = "iqn.2026-11.com.example:fuzz"
INITIATOR = "iqn.2026-11.com.example:seed-initiator"
ISID = bytes([0x80, 0x12, 0x34, 0x56, 0x00, 0x01])


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return struct.pack("<I", crc ^ 0xFFFFFFFF)


def kv(pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)


def pdu(bhs, data=b"", ahs=b"", hd=False, dd=False):
    bhs = bytearray(bhs)
    bhs[4] = len(ahs) // 4
    bhs[5:8] = len(data).to_bytes(3, "big")
    head = bytes(bhs) + ahs
    out = head + (crc32c(head) if hd else b"")
    padded = data + b"\0" * (-len(data) % 4)
    out += padded
    if dd and data:
        out += crc32c(padded)
    return out


def bhs(op, flags, itt=0, f20=0, cmd_sn=0, f28=0, lun=0, rest=b""):
    b = bytearray(48)
    b[0] = op
    b[1] = flags
    b[8:16] = struct.pack(">Q", lun)
    b[16:20] = struct.pack(">I", itt)
    b[20:24] = struct.pack(">I", f20)
    b[24:28] = struct.pack(">I", cmd_sn)
    b[28:32] = struct.pack(">I", f28)
    b[32 : 32 + len(rest)] = rest
    return b


def login(transit, csg, nsg, keys, itt=1, cmd_sn=1, tsih=0):
    b = bhs(0x43, (0x80 if transit else 0) | csg << 2 | nsg, itt=itt, cmd_sn=cmd_sn)
    b[8:14] = ISID
    b[14:16] = struct.pack(">H", tsih)
    return pdu(b, kv(keys))


SECURITY = [
    ("InitiatorName", INITIATOR),
    ("TargetName", TARGET),
    ("SessionType", "Normal"),
    ("HeaderDigest", "None,CRC32C"),
    ("DataDigest", "None"),
    ("AuthMethod", "None"),
]
OPERATIONAL = [
    ("InitialR2T", "No"),
    ("ImmediateData", "Yes"),
    ("MaxBurstLength", "262144"),
    ("FirstBurstLength", "65536"),
    ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "0"),
    ("MaxOutstandingR2T", "1"),
    ("ErrorRecoveryLevel", "0"),
    ("IFMarker", "No"),
    ("OFMarker", "No"),
    ("MaxConnections", "1"),
    ("MaxRecvDataSegmentLength", "262144"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
]
DISCOVERY = [
    ("InitiatorName", INITIATOR),
    ("SessionType", "Discovery"),
    ("AuthMethod", "None"),
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("MaxRecvDataSegmentLength", "262144"),
]


def cmd(itt, cmd_sn, cdb, edtl=0, read=False, write=False, data=b"", fin=True, imm=False, **dg):
    flags = (0x80 if fin else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
    b = bhs(0x01 | (0x40 if imm else 0), flags, itt=itt, f20=edtl, cmd_sn=cmd_sn)
    b[32 : 32 + len(cdb)] = cdb
    return pdu(b, data, **dg)


def data_out(itt, ttt, data_sn, offset, data, fin=True, **dg):
    b = bhs(0x05, 0x80 if fin else 0, itt=itt, f20=ttt)
    b[36:40] = struct.pack(">I", data_sn)
    b[40:44] = struct.pack(">I", offset)
    return pdu(b, data, **dg)


def nop_out(itt, cmd_sn, data=b"", **dg):
    return pdu(bhs(0x40, 0x80, itt=itt, f20=0xFFFFFFFF, cmd_sn=cmd_sn), data, **dg)


def text(itt, cmd_sn, keys, **dg):
    return pdu(bhs(0x04, 0x80, itt=itt, f20=0xFFFFFFFF, cmd_sn=cmd_sn), kv(keys), **dg)


def tmf(function, itt, rtt, cmd_sn, **dg):
    return pdu(bhs(0x42, 0x80 | function, itt=itt, f20=rtt, cmd_sn=cmd_sn), **dg)


def logout(itt, cmd_sn, reason=0, **dg):
    return pdu(bhs(0x46, 0x80 | reason, itt=itt, cmd_sn=cmd_sn), **dg)


READ10 = bytes([0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
WRITE10_1 = bytes([0x2A, 0, 0, 0, 0, 16, 0, 0, 1, 0])
WRITE10_2 = bytes([0x2A, 0, 0, 0, 0, 32, 0, 0, 2, 0])
TUR = bytes(6)
INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])


def full_feature(dg, first_sn=1):
    sn = first_sn
    out = []
    out.append(cmd(0x10, sn, TUR, **dg)); sn += 1
    out.append(cmd(0x11, sn, INQUIRY, edtl=96, read=True, **dg)); sn += 1
    out.append(cmd(0x12, sn, READ10, edtl=4096, read=True, **dg)); sn += 1
    out.append(cmd(0x13, sn, WRITE10_1, edtl=512, write=True, data=b"\xa5" * 512, **dg)); sn += 1
    # Immediate data, then the rest unsolicited (InitialR2T=No).
    out.append(cmd(0x14, sn, WRITE10_2, edtl=1024, write=True, data=b"\x11" * 512, fin=False, **dg)); sn += 1
    out.append(data_out(0x14, 0xFFFFFFFF, 0, 512, b"\x22" * 512, **dg))
    out.append(nop_out(0x15, sn, b"ping", **dg))
    out.append(tmf(1, 0x16, 0x12, sn, **dg))
    out.append(text(0x17, sn, [("SendTargets", "All")], **dg))
    out.append(logout(0x18, sn, **dg))
    return b"".join(out)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def seeds():
    sec = login(True, 0, 1, SECURITY)
    op = login(True, 1, 3, OPERATIONAL)
    # --- pdu: mode byte (1 header digest, 2 data digest, 4 small MRDSL), then the stream.
    write("pdu", "login-request", b"\0" + sec)
    write("pdu", "read10-header-digest", b"\x01" + cmd(1, 1, READ10, edtl=4096, read=True, hd=True))
    write("pdu", "write10-immediate-both-digests",
          b"\x03" + cmd(1, 1, WRITE10_1, edtl=512, write=True, data=b"\xa5" * 512, hd=True, dd=True))
    ext = bytes(range(16))
    ahs = struct.pack(">HB", 17, 1) + b"\0" + ext  # AHSLength 17: reserved byte + 16 CDB bytes
    ahs += b"\0" * (-len(ahs) % 4)
    b = bhs(0x01, 0x81, itt=2, cmd_sn=1)
    b[32:48] = bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18]) + bytes(8)
    write("pdu", "extended-cdb-ahs", b"\0" + pdu(b, ahs=ahs))
    write("pdu", "nop-and-text", b"\x04" + nop_out(3, 1, b"abc") + text(4, 2, [("SendTargets", "All")]))
    # --- login_text: key=value lists as initiators send them.
    write("login_text", "libiscsi-security", kv(SECURITY))
    write("login_text", "libiscsi-operational", kv(OPERATIONAL))
    write("login_text", "discovery", kv(DISCOVERY))
    write("login_text", "odd-values", kv([
        ("MaxBurstLength", "0x10000"), ("FirstBurstLength", "1048576"),
        ("HeaderDigest", "CRC32C,None"), ("DataDigest", "Foo"), ("MaxOutstandingR2T", "0"),
        ("X-com.example.vendor", "1"), ("InitialR2T", "NotUnderstood"), ("ErrorRecoveryLevel", "2"),
        ("DefaultTime2Wait", "3600"), ("IFMarkInt", "2048~8192"),
    ]))
    # --- chap: login requests separated by 0xff; CHAP_R=auto and CHAP_C=reflect are
    # replaced by the entry point (see crates/fuzz-targets).
    sep = b"\xff"
    write("chap", "md5-one-way", kv([("CHAP_A", "5")]) + sep + kv([("CHAP_N", "fuzz-user"), ("CHAP_R", "auto")]))
    write("chap", "sha256-mutual", kv([("CHAP_A", "7,5")]) + sep + kv([
        ("CHAP_N", "fuzz-user"), ("CHAP_R", "auto"), ("CHAP_I", "77"),
        ("CHAP_C", "0x0123456789abcdef0123456789abcdef")]))
    write("chap", "sha3-mutual-base64", kv([("CHAP_A", "8,7,6,5")]) + sep + kv([
        ("CHAP_N", "fuzz-user"), ("CHAP_R", "auto"), ("CHAP_I", "0x10"),
        ("CHAP_C", "0bASNFZ4mrze8BI0VniavN7w==")]))
    write("chap", "reflected-challenge", kv([("CHAP_A", "6")]) + sep + kv([
        ("CHAP_N", "fuzz-user"), ("CHAP_R", "auto"), ("CHAP_I", "1"), ("CHAP_C", "reflect")]))
    write("chap", "wrong-response", kv([("CHAP_A", "5")]) + sep + kv([
        ("CHAP_N", "fuzz-user"), ("CHAP_R", "0x" + "00" * 16)]))
    # --- connection: mode byte (bits 0-3: read size in 16s, 0 = all at once;
    # bits 4-5: clock steps of 100 ms; bit 6: digests required; bit 7: CHAP and ACL), then
    # what the initiator sends.
    write("connection", "normal-session", b"\0" + sec + op + full_feature({}))
    write("connection", "normal-session-small-reads", b"\x11" + sec + op + full_feature({}))
    dsec = [(k, "CRC32C") if k in ("HeaderDigest", "DataDigest") else (k, v) for k, v in SECURITY]
    write("connection", "normal-session-digests",
          b"\0" + login(True, 0, 1, dsec) + op + full_feature({"hd": True, "dd": True}))
    # Mode bit 6: the target requires both digests; this login offers None first.
    bsec = [(k, "None,CRC32C") if k in ("HeaderDigest", "DataDigest") else (k, v) for k, v in SECURITY]
    write("connection", "required-digests-session",
          b"\x40" + login(True, 0, 1, bsec) + op + full_feature({"hd": True, "dd": True}))
    # Mode bit 7: CHAP and an ACL; the exchange starts, the response cannot be right.
    csec = [(k, "CHAP,None") if k == "AuthMethod" else (k, v) for k, v in SECURITY]
    write("connection", "chap-login-start", b"\x80" + login(False, 0, 0, csec)
          + login(False, 0, 0, [("CHAP_A", "7,5")])
          + login(True, 0, 1, [("CHAP_N", "fuzz-user"), ("CHAP_R", "0x" + "00" * 32)]))
    write("connection", "discovery-session", b"\0" + login(True, 0, 3, DISCOVERY)
          + text(1, 1, [("SendTargets", "All")]) + logout(2, 1))
    # --- scsi: byte 0 is the CDB length - 6, then the CDB, then the data-out.
    def scsi(name, cdb, data=b""):
        write("scsi", name, bytes([len(cdb) - 6]) + bytes(cdb) + data)
    scsi("inquiry", INQUIRY)
    scsi("inquiry-vpd-83", [0x12, 1, 0x83, 0, 255, 0])
    scsi("read-capacity-16", [0x9E, 0x10] + [0] * 8 + [0, 0, 0, 32, 0, 0])
    scsi("read-10", READ10)
    scsi("write-10", WRITE10_1, b"\x5a" * 512)
    scsi("write-16-fua", [0x8A, 0x08] + [0] * 7 + [4] + [0, 0, 0, 1, 0, 0], b"\x5a" * 512)
    scsi("mode-sense-6-all", [0x1A, 0, 0x3F, 0, 255, 0])
    caching = bytes([0x08, 0x12, 0x04]) + bytes(17)  # caching page, WCE off
    scsi("mode-select-10-caching", [0x55, 0x10, 0, 0, 0, 0, 0, 0, 8 + len(caching), 0],
         bytes(8) + caching)
    unmap = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 8, 16)
    scsi("unmap", [0x42, 0, 0, 0, 0, 0, 0, 0, len(unmap), 0], unmap)
    register = bytes(8) + struct.pack(">Q", 0x1122334455667788) + bytes(8)
    scsi("pr-out-register", [0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], register)
    scsi("pr-in-read-keys", [0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0])
    scsi("report-luns", [0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    scsi("write-same-16-unmap", [0x93, 0x08] + [0] * 7 + [64] + [0, 0, 0, 8, 0, 0], bytes(512))
    scsi("compare-and-write", [0x89, 0] + [0] * 7 + [2] + [0, 0, 0, 1, 0, 0], bytes(1024))
    scsi("sync-cache-10", [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    scsi("get-lba-status", [0x9E, 0x12] + [0] * 8 + [0, 0, 0, 32, 0, 0])
    scsi("report-supported-opcodes", [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])
    scsi("start-stop-unit", [0x1B, 0, 0, 0, 0x01, 0])


if __name__ == "__main__":
    seeds()
