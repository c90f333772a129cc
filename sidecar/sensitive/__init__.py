"""Sensitive policy data: envelope-encrypted files, decrypted only in memory and loaded into OPA."""

from sidecar.config import SENSITIVE_ROOT
from sidecar.sensitive.at_rest import SEALED_PREFIX, EnvelopeSealer, is_sealed
from sidecar.sensitive.documents import SensitiveData, configured_key, load_sensitive_data
from sidecar.sensitive.envelope import Envelope, open_envelope, seal
from sidecar.sensitive.keys import FileKey, KmsKey, generate_key_file
from sidecar.sensitive.opa_data import SensitiveDataLoader, SensitiveGate

__all__ = [
    "SEALED_PREFIX",
    "SENSITIVE_ROOT",
    "Envelope",
    "EnvelopeSealer",
    "FileKey",
    "KmsKey",
    "SensitiveData",
    "SensitiveDataLoader",
    "SensitiveGate",
    "configured_key",
    "generate_key_file",
    "is_sealed",
    "load_sensitive_data",
    "open_envelope",
    "seal",
]
