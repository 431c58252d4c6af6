"""The allowlist on the endpoint page: add and remove CIDRs, inline with htmx or as plain forms."""

import pytest
from django.urls import reverse

from endpoints.models import AllowlistEntry, AuditEvent
from endpoints.services.allowlist import allowlist_add

HTMX = {"HTTP_HX_REQUEST": "true"}


def add_url(endpoint) -> str:
    return reverse("endpoints:allowlist-add", args=[endpoint.name])


def test_an_admin_adds_a_cidr_inline_and_gets_the_section_back(
    client, admin, endpoint, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(add_url(endpoint), {"cidr": "10.20.0.0/16", "note": "Office VPN"}, **HTMX)
    section = response.content.decode()
    assert response.status_code == 200
    assert section.lstrip().startswith('<section class="card" id="allowlist"')
    assert "10.20.0.0/16" in section and "Office VPN" in section
    entry = AllowlistEntry.objects.get()
    assert (entry.cidr, entry.note, entry.added_by) == ("10.20.0.0/16", "Office VPN", admin)
    assert len(callbacks) == 1  # the runtime is told once this commits


def test_a_single_address_becomes_a_slash_32(client, admin, endpoint):
    client.force_login(admin)
    client.post(add_url(endpoint), {"cidr": "192.0.2.7"}, **HTMX)
    assert AllowlistEntry.objects.get().cidr == "192.0.2.7/32"


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("10.0.0.7/24", "has host bits set; did you mean 10.0.0.0/24?"),
        ("not-an-ip", "is not a valid IPv4 or IPv6 address"),
        ("", "Give an IP address or CIDR range."),
    ],
)
def test_a_bad_cidr_is_refused_on_the_field(client, admin, endpoint, cidr, message):
    client.force_login(admin)
    response = client.post(add_url(endpoint), {"cidr": cidr}, **HTMX)
    # htmx swaps only 2xx answers, so the section comes back as 200 with the error on the field.
    assert response.status_code == 200
    assert message in response.context["allowlist_form"].errors["cidr"][0]
    assert not AllowlistEntry.objects.exists()


def test_a_duplicate_cidr_is_refused_with_a_message(client, admin, endpoint):
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    client.force_login(admin)
    response = client.post(add_url(endpoint), {"cidr": "10.0.0.0/8"}, **HTMX)
    assert "already on the allowlist" in response.content.decode()
    assert AllowlistEntry.objects.count() == 1


def test_without_htmx_a_bad_cidr_re_renders_the_endpoint_page_with_the_error(client, admin, endpoint):
    client.force_login(admin)
    response = client.post(add_url(endpoint), {"cidr": "300.1.1.1"})
    assert response.status_code == 400
    assert "is not a valid IPv4 or IPv6 address" in response.content.decode().replace("&#x27;", "'")
    assert "<html" in response.content.decode()


def test_an_admin_removes_an_entry_inline(client, admin, endpoint, django_capture_on_commit_callbacks):
    entry = allowlist_add(user=admin, endpoint=endpoint, cidr="2001:db8::/32", note="Batch")
    client.force_login(admin)
    with django_capture_on_commit_callbacks():
        response = client.post(reverse("endpoints:allowlist-remove", args=[endpoint.name, entry.pk]), **HTMX)
    assert "<code>2001:db8::/32</code>" not in response.content.decode()
    assert not AllowlistEntry.objects.exists()
    assert AuditEvent.objects.filter(action="allowlist.remove").count() == 1


def test_a_team_member_cannot_edit_the_allowlist(client, admin, member, endpoint):
    entry = allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    client.force_login(member)
    assert client.post(add_url(endpoint), {"cidr": "10.9.0.0/16"}, **HTMX).status_code == 403
    remove = reverse("endpoints:allowlist-remove", args=[endpoint.name, entry.pk])
    assert client.post(remove, **HTMX).status_code == 403
    assert list(AllowlistEntry.objects.values_list("cidr", flat=True)) == ["10.0.0.0/8"]


@pytest.fixture
def guarded(admin):
    """An endpoint that checks addresses, with one entry on its list."""
    from endpoints.services.endpoints import endpoint_create

    endpoint = endpoint_create(user=admin, name="guarded", access_mode="ip_allowlist")
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    return endpoint


def remove_url(endpoint, entry) -> str:
    return reverse("endpoints:allowlist-remove", args=[endpoint.name, entry.pk])


def test_removing_the_last_entry_asks_first_and_removes_nothing_until_confirmed(client, admin, guarded):
    entry = AllowlistEntry.objects.get()
    client.force_login(admin)

    response = client.post(remove_url(guarded, entry), **HTMX)

    section = response.content.decode()
    assert response.status_code == 200
    assert "10.0.0.0/8 is the last entry" in section
    assert "guarded then refuses every caller" in section
    assert 'name="confirm" value="empty"' in section
    assert AllowlistEntry.objects.exists()
    assert not AuditEvent.objects.filter(action="allowlist.remove").exists()

    response = client.post(remove_url(guarded, entry), {"confirm": "empty"}, **HTMX)

    section = response.content.decode()
    assert not AllowlistEntry.objects.exists()
    assert AuditEvent.objects.filter(action="allowlist.remove").count() == 1
    assert "this endpoint refuses every caller until an address is added" in section
    # The access policy line, out of band: the change is on its way.
    assert 'id="access-state"' in section and 'hx-swap-oob="true"' in section
    assert "<strong>pending</strong>" in section


def test_without_htmx_the_confirm_step_is_a_page_and_the_answer_a_form(client, admin, guarded):
    entry = AllowlistEntry.objects.get()
    client.force_login(admin)

    page = client.post(remove_url(guarded, entry))

    assert page.status_code == 200 and "<html" in page.content.decode()
    assert "Remove it and refuse every caller" in page.content.decode()
    assert AllowlistEntry.objects.exists()
    assert client.post(remove_url(guarded, entry), {"confirm": "empty"}).status_code == 302
    assert not AllowlistEntry.objects.exists()


def test_removing_one_of_several_entries_or_from_a_key_only_endpoint_asks_nothing(
    client, admin, guarded, endpoint
):
    allowlist_add(user=admin, endpoint=guarded, cidr="192.0.2.0/24")
    keys_only = allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
    client.force_login(admin)

    client.post(remove_url(guarded, AllowlistEntry.objects.get(cidr="192.0.2.0/24")), **HTMX)
    client.post(remove_url(endpoint, keys_only), **HTMX)

    assert list(AllowlistEntry.objects.values_list("cidr", flat=True)) == ["10.0.0.0/8"]


def test_the_last_entry_has_no_script_confirm_the_others_have(client, admin, guarded):
    client.force_login(admin)
    section = client.post(add_url(guarded), {"cidr": "192.0.2.0/24"}, **HTMX).content.decode()
    assert section.count("hx-confirm=") == 2
    other = AllowlistEntry.objects.get(cidr="192.0.2.0/24")
    section = client.post(remove_url(guarded, other), **HTMX).content.decode()
    assert "hx-confirm=" not in section  # the server asks instead, in the page
