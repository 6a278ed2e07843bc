"""The daemon's identity key, as github.com/docker/libtrust keeps it for Docker.

Docker 1.8.2's NewDaemon (daemon/daemon.go) calls api.LoadOrCreateTrustKey on
/etc/docker/key.json: it loads the libtrust private key kept there, or makes a
new ECDSA P-256 key pair and saves it. The key's KeyID, a fingerprint of the
public key, becomes the daemon ID that `docker info` shows as "ID". Because the
file survives restarts, the ID does too: it names this daemon, not this run.

key.json is a JSON Web Key (RFC 7517) with sorted members, as Go writes a map:

    {"crv":"P-256","d":"...","kid":"ABCD:...","kty":"EC","x":"...","y":"..."}

x and y are the public point's coordinates and d the private scalar, each a
32-byte big-endian number in unpadded base64url. kid is the KeyID:

    base32(sha256(DER SubjectPublicKeyInfo of the point)[:30]) in 12 groups of 4

The elliptic-curve arithmetic lives here too, in plain Python, because the
standard library has none. Only key generation needs it (d -> d*G); the daemon
makes a key once per machine, so Python integers, which are not constant-time,
are acceptable here and would not be for signing many messages.
"""

import base64
import hashlib
import json
import os
import re
import secrets

from drivers.ioutils import atomic_write_file

DEFAULT_TRUST_KEY_PATH = "/etc/docker/key.json"

# The key's directory is made like the packaged /etc/docker (0755): it also
# holds daemon.json and certs.d. The private key itself is the file, 0600.
KEY_DIR_MODE = 0o755
KEY_FILE_MODE = 0o600


class TrustKeyError(Exception):
    """The trust key could not be loaded or created; the daemon cannot boot."""


# ---------------------------------------------------------------------------
# P-256 (NIST FIPS 186-4 D.1.2.3, SEC 2 "secp256r1"): y^2 = x^3 - 3x + b mod p

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # order of G
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

COORDINATE_SIZE = 32  # bytes in x, y and d


def is_on_curve(x, y):
    """Whether the affine point (x, y) satisfies the curve equation."""
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x - 3 * x + B)) % P == 0


# Points are kept in Jacobian coordinates (X, Y, Z), meaning the affine point
# (X/Z^2, Y/Z^3), so that adding and doubling need no modular inverse; one
# inverse at the end converts back. Z == 0 is the point at infinity.
INFINITY = (1, 1, 0)


def jacobian_double(point):
    """2*point, using a = -3 to turn 3X^2 + aZ^4 into 3(X - Z^2)(X + Z^2)."""
    x, y, z = point
    if z == 0 or y == 0:
        return INFINITY
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return (x3, y3, z3)


def jacobian_add(p1, p2):
    """p1 + p2 for any two points, falling back to doubling when they are equal."""
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return jacobian_double(p1) if s1 == s2 else INFINITY
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return (x3, y3, z3)


def to_affine(point):
    x, y, z = point
    z_inv = pow(z, P - 2, P)  # Fermat: z^(p-2) is 1/z because p is prime
    z_inv2 = z_inv * z_inv % P
    return (x * z_inv2 % P, y * z_inv2 * z_inv % P)


def scalar_base_mult(k):
    """k*G as an affine point: double-and-add over k's bits, high bit first."""
    result = INFINITY
    generator = (GX, GY, 1)
    for bit in bin(k)[2:]:
        result = jacobian_double(result)
        if bit == "1":
            result = jacobian_add(result, generator)
    return to_affine(result)


def generate_private_scalar():
    """A private key d chosen uniformly from [1, N-1] by the OS's CSPRNG."""
    return secrets.randbelow(N - 1) + 1


# ---------------------------------------------------------------------------
# Encodings: JOSE base64url, the DER public key, the KeyID

BASE64URL_ALPHABET = re.compile(r"^[A-Za-z0-9_-]*$")


def jose_base64url_encode(data):
    """base64url without the '=' padding, as JOSE (RFC 7515 section 2) writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jose_base64url_decode(text):
    """The inverse of jose_base64url_encode; refuses anything outside the alphabet."""
    if not BASE64URL_ALPHABET.match(text) or len(text) % 4 == 1:
        raise ValueError("illegal base64url string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_coordinate(value):
    """A curve number as JWK wants it: exactly 32 bytes, leading zeros kept."""
    return jose_base64url_encode(value.to_bytes(COORDINATE_SIZE, "big"))


def decode_coordinate(text):
    raw = jose_base64url_decode(text)
    if len(raw) != COORDINATE_SIZE:
        raise ValueError("invalid number of octets: got %d, should be %d"
                         % (len(raw), COORDINATE_SIZE))
    return int.from_bytes(raw, "big")


# DER (X.690) pieces of a SubjectPublicKeyInfo (RFC 5480) for a P-256 key.
DER_SEQUENCE = 0x30
DER_OBJECT_IDENTIFIER = 0x06
DER_BIT_STRING = 0x03
OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1 id-ecPublicKey
OID_PRIME256V1 = bytes.fromhex("2a8648ce3d030107")   # 1.2.840.10045.3.1.7 P-256
UNCOMPRESSED_POINT = b"\x04"


def der(tag, content):
    """One DER element; every element of a P-256 key is shorter than 128 bytes,
    so its length fits in the single short-form length byte."""
    return bytes([tag, len(content)]) + content


def marshal_pkix_public_key(x, y):
    """The DER SubjectPublicKeyInfo, what Go's x509.MarshalPKIXPublicKey returns."""
    algorithm = der(DER_SEQUENCE, der(DER_OBJECT_IDENTIFIER, OID_EC_PUBLIC_KEY)
                    + der(DER_OBJECT_IDENTIFIER, OID_PRIME256V1))
    point = (UNCOMPRESSED_POINT + x.to_bytes(COORDINATE_SIZE, "big")
             + y.to_bytes(COORDINATE_SIZE, "big"))
    # A BIT STRING starts with its count of unused bits: none here.
    return der(DER_SEQUENCE, algorithm + der(DER_BIT_STRING, b"\x00" + point))


def key_id_encode(digest):
    """keyIDEncode: base32 without padding, cut into ':'-joined groups of four."""
    text = base64.b32encode(digest).decode("ascii").rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def key_id_from_public_point(x, y):
    """keyIDFromCryptoKey: the first 240 bits of the SHA-256 of the DER public key.

    240 bits are exactly 48 base32 characters, so the ID has no padding and
    splits evenly into twelve groups.
    """
    digest = hashlib.sha256(marshal_pkix_public_key(x, y)).digest()
    return key_id_encode(digest[:30])


# ---------------------------------------------------------------------------
# The key and its file


class TrustKey:
    """A libtrust EC P-256 private key and the file it lives in."""

    def __init__(self, path, d, x, y):
        self.path = path
        self.d = d
        self.x = x
        self.y = y
        self.key_id = key_id_from_public_point(x, y)

    def marshal_jwk(self):
        """key.json's bytes: compact JSON with sorted members, like Go's json.Marshal."""
        jwk = {
            "crv": "P-256",
            "d": encode_coordinate(self.d),
            "kid": self.key_id,
            "kty": "EC",
            "x": encode_coordinate(self.x),
            "y": encode_coordinate(self.y),
        }
        return json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode("ascii")


def generate_ec_p256_private_key(path):
    """GenerateECP256PrivateKey: a fresh key pair, not yet saved."""
    d = generate_private_scalar()
    x, y = scalar_base_mult(d)
    return TrustKey(path, d, x, y)


def string_from_jwk(jwk, name, context):
    value = jwk.get(name)
    if value is None:
        raise ValueError("%s: %r value not specified" % (context, name))
    if not isinstance(value, str):
        raise ValueError("%s: %r value must be a string" % (context, name))
    return value


def coordinate_from_jwk(jwk, name, context):
    text = string_from_jwk(jwk, name, context)
    try:
        return decode_coordinate(text)
    except ValueError as err:
        raise ValueError("%s: %s" % (context, err))


def unmarshal_private_key_jwk(path, data):
    """UnmarshalPrivateKeyJWK, for the EC P-256 keys Docker makes.

    Beyond libtrust's own checks, it refuses a point off the curve and a d
    whose public point is not (x, y): either would make a daemon ID that the
    key cannot back.
    """
    try:
        jwk = json.loads(data)
    except ValueError as err:
        raise ValueError("decoding JWK Private Key JSON data: %s" % err)
    if not isinstance(jwk, dict):
        raise ValueError("decoding JWK Private Key JSON data: not a JSON object")
    kty = string_from_jwk(jwk, "kty", "JWK Private Key type")
    if kty != "EC":
        raise ValueError("JWK Private Key type not supported: %r" % kty)
    crv = string_from_jwk(jwk, "crv", "JWK EC Public Key curve identifier")
    if crv != "P-256":
        raise ValueError("JWK EC Public Key curve identifier not supported: %r" % crv)
    x = coordinate_from_jwk(jwk, "x", "JWK EC Public Key x-coordinate")
    y = coordinate_from_jwk(jwk, "y", "JWK EC Public Key y-coordinate")
    if not is_on_curve(x, y):
        raise ValueError("JWK EC Public Key point is not on curve P-256")
    d = coordinate_from_jwk(jwk, "d", "JWK EC Private Key d-param")
    if not 1 <= d < N or scalar_base_mult(d) != (x, y):
        raise ValueError("JWK EC Private Key d-param does not match the public key")
    key = TrustKey(path, d, x, y)
    # kid is optional in a JWK, but when present it must name this key.
    if "kid" in jwk and string_from_jwk(jwk, "kid", "JWK EC Public Key ID") != key.key_id:
        raise ValueError("JWK EC Public Key ID does not match: %s" % jwk["kid"])
    return key


def load_key_file(path):
    """LoadKeyFile: the key saved at path, or None when there is no file yet."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise TrustKeyError("unable to read private key file %s: %s" % (path, err.strerror))
    try:
        return unmarshal_private_key_jwk(path, data)
    except ValueError as err:
        raise TrustKeyError("unable to decode private key JWK: %s" % err)


def load_or_create_trust_key(path=DEFAULT_TRUST_KEY_PATH):
    """LoadOrCreateTrustKey (api/common.go): the daemon's key, made on first boot.

    The daemon ID is the returned key's key_id.
    """
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, KEY_DIR_MODE, exist_ok=True)
    except OSError as err:
        raise TrustKeyError("mkdir %s: %s" % (directory, err.strerror))
    try:
        key = load_key_file(path)
    except TrustKeyError as err:
        raise TrustKeyError("Error loading key file %s: %s" % (path, err)) from err
    if key is not None:
        return key
    key = generate_ec_p256_private_key(path)
    try:
        atomic_write_file(path, key.marshal_jwk(), KEY_FILE_MODE)
    except OSError as err:
        raise TrustKeyError("Error saving key file: %s" % err)
    return key
