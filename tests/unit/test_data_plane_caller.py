"""How the data plane derives a decision's caller from an identity: narrowing only (issue 15)."""

from __future__ import annotations

import pytest

from sidecar.errors import PermissionDenied
from sidecar.governance import Admission, TenantScope
from sidecar.governance.identity import Caller as Identity
from sidecar.model.decision import Caller

SCOPE = TenantScope({"acme/": "acme", "acme/shared/": "globex"}, {"acme-prod": ("acme",)})


def _admission(tenants: tuple[str, ...] = (), *, platform: bool = False) -> Admission:
    identity = Identity("token:ci", ("token:ci",), "token")
    return Admission(identity, ("auditor", "replicator"), tenants, platform, SCOPE)


@pytest.mark.parametrize(
    ("tenants", "platform", "requested", "derived"),
    [
        (("acme",), False, Caller(), Caller("token:ci", "acme", ("auditor", "replicator"))),
        (("acme", "globex"), False, Caller(tenant="globex", roles=("replicator",)),
         Caller("token:ci", "globex", ("replicator",))),
        ((), True, Caller("token:ci"), Caller("token:ci", None, ("auditor", "replicator"))),
        ((), True, Caller(tenant="acme"), Caller("token:ci", "acme", ("auditor", "replicator"))),
    ],
)  # fmt: skip
def test_a_request_may_narrow_the_identity(
    tenants: tuple[str, ...], platform: bool, requested: Caller, derived: Caller
) -> None:
    assert _admission(tenants, platform=platform).narrow(requested) == derived


@pytest.mark.parametrize(
    ("tenants", "requested", "problem"),
    [
        (("acme",), Caller(tenant="globex"), "caller.tenant: token:ci acts for tenants [acme], not 'globex'"),
        (("acme", "globex"), Caller(), "caller.tenant: token:ci acts for tenants [acme, globex]: name one"),
        (("acme",), Caller(roles=("platform-admin",)), "caller.roles: token:ci does not hold 'platform-admin'"),
        (("acme",), Caller(subject="CN=admin"), "caller.subject: 'CN=admin' is not the authenticated caller"),
    ],
)  # fmt: skip
def test_a_request_may_not_widen_it(
    tenants: tuple[str, ...], requested: Caller, problem: str
) -> None:
    with pytest.raises(PermissionDenied, match="caller\\.") as refused:
        _admission(tenants).narrow(requested)
    assert problem in refused.value.message


def test_a_tenant_sees_its_repositories_registries_and_decisions_only() -> None:
    acme = _admission(("acme",))
    assert acme.sees_repository("acme/web") and not acme.sees_repository("acme/shared/x")
    assert not acme.sees_repository("team/app")  # no tenant: the platform's
    assert acme.sees_registry("acme-prod") and acme.sees_registry("prod-us")
    assert not _admission(("globex",)).sees_registry("acme-prod")
    assert acme.sees_record({"caller": {"tenant": "acme"}, "image": {"tenant": "globex"}})
    assert acme.sees_record({"caller": {"tenant": None}, "image": {"tenant": "acme"}})
    assert not acme.sees_record({"caller": {"tenant": "globex"}, "image": {"tenant": "acme"}})
    assert not acme.sees_record(None)
    platform = _admission(platform=True)
    assert platform.sees_repository("team/app") and platform.sees_record(None)
