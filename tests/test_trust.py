"""Tests for drivers/trust.py: the libtrust key in key.json and the daemon ID it gives.

tests/fixtures/trust/key.json was written by a real dockerd 20.10 (Debian's
docker.io package), and daemon_id beside it is what `docker info --format
'{{.ID}}'` reported for that daemon, so the fixed-vector tests compare against
libtrust itself. The openssl tests check the curve arithmetic and the DER
public key against an independent implementation.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from drivers import trust

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "trust")
FIXTURE_KEY = os.path.join(FIXTURES, "key.json")
KEY_ID_FORMAT = re.compile(r"^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$")

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def dockerd_reported_id():
    with open(os.path.join(FIXTURES, "daemon_id")) as f:
        return f.read().strip()


@pytest.fixture
def fixture_copy(tmp_path):
    path = tmp_path / "key.json"
    shutil.copyfile(FIXTURE_KEY, path)
    return str(path)


def write_tampered_fixture(tmp_path, **changes):
    """The fixture key with some JWK members replaced (None removes one)."""
    jwk = json.loads(read_bytes(FIXTURE_KEY))
    for name, value in changes.items():
        if value is None:
            del jwk[name]
        else:
            jwk[name] = value
    path = tmp_path / "key.json"
    path.write_text(json.dumps(jwk))
    return str(path)


def assert_load_fails(path, reason):
    with pytest.raises(trust.TrustKeyError) as excinfo:
        trust.load_or_create_trust_key(path)
    message = str(excinfo.value)
    assert message.startswith("Error loading key file %s: " % path)
    assert reason in message


def openssl(*args, stdin=None):
    return subprocess.run(("openssl",) + args, input=stdin, stdout=subprocess.PIPE,
                          check=True).stdout


# --- the fixed vector from a real dockerd


def test_key_id_of_dockerd_key_equals_the_id_dockerd_reported(fixture_copy):
    assert trust.load_or_create_trust_key(fixture_copy).key_id == dockerd_reported_id()


def test_public_point_of_dockerd_key_is_d_times_generator(fixture_copy):
    key = trust.load_or_create_trust_key(fixture_copy)
    assert trust.scalar_base_mult(key.d) == (key.x, key.y)


def test_dockerd_key_file_round_trips_byte_for_byte(fixture_copy):
    key = trust.load_or_create_trust_key(fixture_copy)
    assert key.marshal_jwk() == read_bytes(FIXTURE_KEY)


def test_loading_an_existing_key_leaves_the_file_untouched(fixture_copy):
    before = os.stat(fixture_copy)
    trust.load_or_create_trust_key(fixture_copy)
    after = os.stat(fixture_copy)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# --- creating a key


def test_missing_key_file_is_created(tmp_path):
    path = tmp_path / "key.json"
    key = trust.load_or_create_trust_key(str(path))
    assert json.loads(path.read_bytes())["kid"] == key.key_id


def test_created_key_file_is_mode_0600(tmp_path):
    path = tmp_path / "key.json"
    trust.load_or_create_trust_key(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_parent_directory_is_created_0755(tmp_path):
    path = tmp_path / "etc" / "docker" / "key.json"
    old_umask = os.umask(0o022)
    try:
        trust.load_or_create_trust_key(str(path))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_created_key_leaves_no_temporary_file(tmp_path):
    trust.load_or_create_trust_key(str(tmp_path / "key.json"))
    assert os.listdir(tmp_path) == ["key.json"]


def test_second_load_reuses_the_key(tmp_path):
    path = str(tmp_path / "key.json")
    first = trust.load_or_create_trust_key(path)
    second = trust.load_or_create_trust_key(path)
    assert (second.key_id, second.d) == (first.key_id, first.d)


def test_two_new_keys_differ(tmp_path):
    first = trust.load_or_create_trust_key(str(tmp_path / "a.json"))
    second = trust.load_or_create_trust_key(str(tmp_path / "b.json"))
    assert first.key_id != second.key_id


def test_generated_public_point_is_on_the_curve():
    key = trust.generate_ec_p256_private_key("unused")
    assert trust.is_on_curve(key.x, key.y)


def test_key_id_has_twelve_groups_of_four_base32_characters():
    key = trust.generate_ec_p256_private_key("unused")
    assert KEY_ID_FORMAT.match(key.key_id)


def test_key_generation_takes_well_under_50ms():
    rounds = 10
    start = time.perf_counter()
    for _ in range(rounds):
        trust.generate_ec_p256_private_key("unused")
    assert (time.perf_counter() - start) / rounds < 0.025


# --- the curve arithmetic and the DER public key, checked against openssl


@needs_openssl
def test_public_point_matches_openssl_for_an_openssl_generated_key():
    # A SEC 1 ECPrivateKey for P-256 is 121 bytes: d at bytes 7..38, then the
    # curve OID, then the uncompressed public point as the last 65 bytes.
    sec1 = openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-outform", "DER")
    d = int.from_bytes(sec1[7:39], "big")
    point = sec1[-65:]
    assert trust.scalar_base_mult(d) == (int.from_bytes(point[1:33], "big"),
                                         int.from_bytes(point[33:], "big"))


@needs_openssl
def test_der_public_key_matches_openssl():
    sec1 = openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-outform", "DER")
    point = sec1[-65:]
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    spki = openssl("pkey", "-inform", "DER", "-pubout", "-outform", "DER", stdin=sec1)
    assert trust.marshal_pkix_public_key(x, y) == spki


def test_doubling_equals_adding_a_point_to_itself():
    generator = (trust.GX, trust.GY, 1)
    doubled = trust.to_affine(trust.jacobian_double(generator))
    assert doubled == trust.scalar_base_mult(2)
    assert trust.to_affine(trust.jacobian_add(generator, generator)) == doubled


def test_order_minus_one_times_generator_is_minus_generator():
    # N*G is the point at infinity, so (N-1)*G is -G, the mirror image of G.
    assert trust.scalar_base_mult(trust.N - 1) == (trust.GX, trust.P - trust.GY)


# --- refusing a bad key.json, with libtrust's context


def test_corrupt_key_file_error_names_the_file(tmp_path):
    path = tmp_path / "key.json"
    path.write_text('{"crv":"P-256",')
    assert_load_fails(str(path), "unable to decode private key JWK: decoding JWK Private Key JSON data")


def test_corrupt_key_file_is_not_replaced(tmp_path):
    path = tmp_path / "key.json"
    path.write_text("not json")
    with pytest.raises(trust.TrustKeyError):
        trust.load_or_create_trust_key(str(path))
    assert path.read_text() == "not json"


def test_key_type_other_than_ec_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, kty="RSA"),
                      "JWK Private Key type not supported: 'RSA'")


def test_curve_other_than_p256_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, crv="P-384"),
                      "curve identifier not supported: 'P-384'")


def test_missing_coordinate_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, y=None),
                      "JWK EC Public Key y-coordinate: 'y' value not specified")


def test_short_coordinate_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, x="AAAA"),
                      "invalid number of octets: got 3, should be 32")


def test_coordinate_outside_base64url_is_refused(tmp_path):
    jwk = json.loads(read_bytes(FIXTURE_KEY))
    assert_load_fails(write_tampered_fixture(tmp_path, x=jwk["x"][:-1] + "+"),
                      "illegal base64url string")


def test_point_off_the_curve_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, y=trust.encode_coordinate(1)),
                      "point is not on curve P-256")


def test_private_key_not_matching_the_public_point_is_refused(tmp_path):
    assert_load_fails(write_tampered_fixture(tmp_path, d=trust.encode_coordinate(2)),
                      "d-param does not match the public key")


def test_kid_not_matching_the_key_is_refused(tmp_path):
    wrong = "AAAA:" * 11 + "AAAA"
    assert_load_fails(write_tampered_fixture(tmp_path, kid=wrong),
                      "JWK EC Public Key ID does not match: " + wrong)


def test_key_without_kid_loads_with_the_computed_id(tmp_path):
    path = write_tampered_fixture(tmp_path, kid=None)
    assert trust.load_or_create_trust_key(path).key_id == dockerd_reported_id()


def test_unreadable_key_path_is_refused(tmp_path):
    path = tmp_path / "key.json"
    path.mkdir()
    assert_load_fails(str(path), "unable to read private key file %s: Is a directory" % path)
