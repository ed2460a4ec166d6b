"""CKKS contexts: the custodian's secret one and the public one the aggregator may hold.

Why a wrapper: a raw TenSEAL context serialises *with* whatever keys it holds and pickles
happily. :class:`SecretContext` cannot be pickled, prints no key material, and only ever
leaves the process sealed to a silo certificate (see ``_sealing.py``); everything else gets
:func:`public_context_bytes`, which drops the secret key and fails closed if it did not.
"""

from __future__ import annotations

import hashlib

import tenseal as ts
import tenseal.sealapi  # noqa: F401  (registers SEAL's types, e.g. Modulus, with pybind)

from privacy.he._presets import CkksPreset, get_preset
from protos.errors import InvalidInput


class _CkksContext:
    """What both contexts hold: the TenSEAL context, its preset and its ``context_id``."""

    __slots__ = ("_ctx", "_preset", "_context_id")

    _ctx: ts.Context
    _preset: CkksPreset
    _context_id: str

    @property
    def preset(self) -> CkksPreset:
        return self._preset

    @property
    def context_id(self) -> str:
        return self._context_id

    def _tenseal(self) -> ts.Context:
        """The raw context (it serialises its secret key on request): package-internal."""
        return self._ctx


class SecretContext(_CkksContext):
    """A CKKS context holding the federation's secret key (silos only, never the aggregator).

    ``context_id`` is the SHA-256 of the public context bytes: every manifest names it so a
    ciphertext meant for another key or federation is refused before it is used.
    """

    __slots__ = ("_public_bytes",)

    def __init__(self, ctx: ts.Context, preset: CkksPreset) -> None:
        if not ctx.is_private():
            raise InvalidInput("a SecretContext needs a TenSEAL context with its secret key")
        self._ctx = ctx
        self._preset = preset
        self._public_bytes = _serialize_public(ctx)
        self._context_id = hashlib.sha256(self._public_bytes).hexdigest()

    def public_bytes(self) -> bytes:
        return self._public_bytes

    def _secret_bytes(self) -> bytes:
        """The secret context; only the sealing code calls this (never log or store it)."""
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )

    def __reduce__(self) -> object:
        raise TypeError("a SecretContext cannot be pickled; seal it to a silo certificate")

    def __repr__(self) -> str:
        return f"SecretContext(preset={self._preset.name!r}, context_id={self._context_id[:12]}…)"


class PublicContext(_CkksContext):
    """A CKKS context without the secret key: enough to add ciphertexts, not to decrypt."""

    __slots__ = ()

    def __init__(self, data: bytes, preset: CkksPreset) -> None:
        try:
            ctx = ts.context_from(data)
        except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError
            raise InvalidInput(f"the public CKKS context could not be loaded: {exc}") from None
        if ctx.is_private():
            raise InvalidInput(
                "the 'public' CKKS context holds a secret key; refusing to use it (it must be "
                "made with public_context_bytes)"
            )
        _check_matches_preset(ctx, preset)
        self._ctx = ctx
        self._preset = preset
        self._context_id = hashlib.sha256(data).hexdigest()


def _serialize_public(ctx: ts.Context) -> bytes:
    data = ctx.serialize(
        save_public_key=True,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    if ts.context_from(data).is_private():  # fail closed if TenSEAL ever changes its default
        raise RuntimeError("TenSEAL serialised the secret key into a public context")
    return data


def _check_matches_preset(ctx: ts.Context, preset: CkksPreset) -> None:
    parms = ctx.seal_context().data.key_context_data().parms()
    degree = parms.poly_modulus_degree()
    bits = tuple(q.bit_count() for q in parms.coeff_modulus())
    if degree != preset.poly_modulus_degree or bits != preset.coeff_mod_bit_sizes:
        raise InvalidInput(
            f"the CKKS context (N={degree}, primes {list(bits)}) does not match preset "
            f"{preset.name!r} (N={preset.poly_modulus_degree}, primes "
            f"{list(preset.coeff_mod_bit_sizes)})"
        )


def generate_secret_context(preset_name: str) -> SecretContext:
    """The key custodian's fresh CKKS key pair for ``preset_name`` (no relin/Galois keys:
    aggregation only adds). TenSEAL draws the keys from SEAL's CSPRNG."""
    preset = get_preset(preset_name)
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=preset.poly_modulus_degree,
        coeff_mod_bit_sizes=list(preset.coeff_mod_bit_sizes),
    )
    ctx.global_scale = preset.scale
    return SecretContext(ctx, preset)


def load_secret_context(data: bytes, preset_name: str) -> SecretContext:
    """Rebuild a secret context from its serialised form (used after unsealing)."""
    preset = get_preset(preset_name)
    try:
        ctx = ts.context_from(data)
    except Exception as exc:
        raise InvalidInput(f"the secret CKKS context could not be loaded: {exc}") from None
    if not ctx.is_private():
        raise InvalidInput("the sealed CKKS context holds no secret key")
    _check_matches_preset(ctx, preset)
    ctx.global_scale = preset.scale
    return SecretContext(ctx, preset)


def public_context_bytes(ctx: SecretContext) -> bytes:
    """The context the aggregator gets: public key and parameters, never the secret key."""
    return ctx.public_bytes()


def load_public_context(data: bytes, preset_name: str) -> PublicContext:
    """The aggregator's view; refuses bytes that hold a secret key or another preset."""
    return PublicContext(data, get_preset(preset_name))
