"""The DNS half of the pre-flight: what Gmail's and Yahoo's bulk-sender rules
look at (dnspython, through NEWSLETTER_DNS_RESOLVER or the system's resolver).

- SPF of the envelope-sender domain (the VERP return path's, or From's): one
  ``v=spf1`` record, ending in ``-all`` or ``~all``, within SPF's limit of 10
  DNS lookups (includes followed), and naming the ESP when there is one;
- DKIM: the public key at ``<selector>._domainkey.<domain>`` is the one that
  belongs to ``NEWSLETTER_DKIM_KEY_FILE``;
- DMARC at ``_dmarc.<From domain>`` (or its organisational domain), with SPF
  or DKIM aligned with From (relaxed or strict, as the record asks);
- MX (or at least an address) for the domain bounces return to.
"""

from __future__ import annotations

import base64
import re
from email.utils import parseaddr
from functools import cache

import dns.exception
import dns.nameserver
import dns.resolver
from cryptography.hazmat.primitives import serialization
from publicsuffixlist import PublicSuffixList

from newsletter.config import Settings, dns_server
from newsletter.doctor.report import FAIL, PASS, SKIP, WARN, Finding
from newsletter.dsn import parse_dsn

MAX_SPF_LOOKUPS = 10
TIMEOUT = 5.0  # seconds a resolver has to answer before doctor says it did not
# What each ESP's SPF include is (their documentation); SMTP relays vary.
ESP_SPF = {
    "postmark": "spf.mtasv.net",
    "sendgrid": "sendgrid.net",
    "mailgun": "mailgun.org",
    "ses": "amazonses.com",
    "resend": "amazonses.com",
}
ESPS = set(ESP_SPF)


class Lookup:
    """A resolver that answers "none" for a name without records (NXDOMAIN,
    no answer) and raises ``DnsTrouble`` for a resolver that does not answer."""

    def __init__(self, settings: Settings, timeout: float | None = None):
        timeout = TIMEOUT if timeout is None else timeout
        if settings.dns_resolver:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port)
                for host, port in (dns_server(s) for s in settings.dns_resolver.split(",") if s.strip())
            ]
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout

    def records(self, name: str, rdtype: str) -> list:
        try:
            return list(self.resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTrouble(
                f"the resolver did not answer for {name} {rdtype}: {exc.__class__.__name__}"
            ) from exc

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.records(name, "TXT")]


class DnsTrouble(Exception):
    pass


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def org_domain(domain: str) -> str:
    """The organisational domain (DMARC's relaxed alignment): news.example.co.uk → example.co.uk."""
    return _psl().privatesuffix(domain.lower().rstrip(".")) or domain.lower()


def from_domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2].lower()


def envelope_domain(settings: Settings) -> str:
    """Where bounces go and whose SPF receivers check: the VERP return path's domain, or From's."""
    if settings.bounce_return_path:
        return settings.bounce_return_path.rpartition("@")[2].lower()
    return from_domain(settings)


def provider(settings: Settings) -> str:
    return parse_dsn(settings.transport).scheme


def _guarded(check: str, title: str, run) -> Finding:
    try:
        return run()
    except DnsTrouble as exc:
        return Finding(check, title, FAIL, str(exc), "Check NEWSLETTER_DNS_RESOLVER, or this machine's DNS.")


# --- SPF ---------------------------------------------------------------------------


def _spf_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup.txt(domain) if re.match(r"(?i)^v=spf1(\s|$)", t)]


def _spf_lookups(lookup: Lookup, record: str, seen: set[str], depth: int = 0) -> int:
    """DNS lookups the record costs a receiver (RFC 7208 §4.6.4), includes followed."""
    count = 0
    for term in record.split()[1:]:
        parts = re.split(r"[:=/]", term.lstrip("+-~?").lower(), maxsplit=1)
        mechanism, target = parts[0], parts[1] if len(parts) > 1 else ""
        if mechanism in ("a", "mx", "ptr", "exists"):
            count += 1
        elif mechanism in ("include", "redirect") and target:
            count += 1
            if target not in seen and depth < 10:
                seen.add(target)
                inner = _spf_records(lookup, target)
                if inner:
                    count += _spf_lookups(lookup, inner[0], seen, depth + 1)
    return count


def check_spf(settings: Settings, lookup: Lookup) -> Finding:
    domain = envelope_domain(settings)
    title = f"SPF for {domain} (the envelope sender)"
    scheme = provider(settings)
    include = ESP_SPF.get(scheme)
    example = f"v=spf1 include:{include} ~all" if include else "v=spf1 a mx ip4:<your relay's address> ~all"

    def run() -> Finding:
        records = _spf_records(lookup, domain)
        if not records:
            return Finding(
                "spf", title, FAIL, f"no SPF record at {domain}", f'Publish TXT {domain} "{example}".'
            )
        if len(records) > 1:
            return Finding(
                "spf", title, FAIL, f"{len(records)} SPF records at {domain} (receivers treat that as an error)",
                "Merge them into one TXT record.",
            )  # fmt: skip
        record = records[0]
        terms = record.lower().split()
        if "+all" in terms or "all" in terms:
            return Finding(
                "spf",
                title,
                FAIL,
                f"{record!r} lets anyone send as {domain}",
                "End the record with ~all or -all.",
            )
        lookups = _spf_lookups(lookup, record, {domain})
        if lookups > MAX_SPF_LOOKUPS:
            return Finding(
                "spf", title, FAIL,
                f"{record!r} needs {lookups} DNS lookups; receivers stop at {MAX_SPF_LOOKUPS} (permerror)",
                "Remove includes you no longer use, or flatten them into ip4:/ip6: ranges.",
            )  # fmt: skip
        if not any(t in terms for t in ("-all", "~all")):
            return Finding(
                "spf",
                title,
                WARN,
                f"{record!r} does not end in -all or ~all",
                "End the record with ~all or -all.",
            )
        if include and f"include:{include}" not in terms and not settings.bounce_return_path:
            return Finding(
                "spf", title, WARN, f"{record!r} does not include {include}, which {scheme} sends from",
                f"Add include:{include} (or set up {scheme}'s custom return path, whose SPF it manages).",
            )  # fmt: skip
        return Finding("spf", title, PASS, f"{record!r} ({lookups} DNS lookups of {MAX_SPF_LOOKUPS})")

    return _guarded("spf", title, run)


# --- DKIM --------------------------------------------------------------------------


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def configured_public_key(settings: Settings) -> str:
    """The base64 SubjectPublicKeyInfo of NEWSLETTER_DKIM_KEY_FILE's private key (as p= carries it)."""
    with open(settings.dkim_key_file, "rb") as handle:
        private = serialization.load_pem_private_key(handle.read(), password=None)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def check_dkim(settings: Settings, lookup: Lookup) -> Finding:
    if not settings.dkim_domain:
        scheme = provider(settings)
        if scheme in ESPS:
            return Finding(
                "dkim", "DKIM", SKIP, f"{scheme} signs the mail with the DKIM key of your domain it manages",
                f"Verify your sending domain in {scheme}'s dashboard (it shows the DKIM records to publish).",
            )  # fmt: skip
        return Finding(
            "dkim", "DKIM", FAIL, "DKIM signing is off: Gmail and Yahoo require DKIM from bulk senders",
            "Make a key (openssl genrsa -out dkim.pem 2048), set NEWSLETTER_DKIM_DOMAIN, _SELECTOR and _KEY_FILE, "
            "and publish its public key (newsletter doctor shows the record).",
        )  # fmt: skip
    name = f"{settings.dkim_selector}._domainkey.{settings.dkim_domain}"
    title = f"DKIM key at {name}"
    try:
        mine = configured_public_key(settings)
    except (OSError, ValueError, TypeError) as exc:
        return Finding(
            "dkim", title, FAIL, f"cannot read NEWSLETTER_DKIM_KEY_FILE: {exc}", "Point it at a PEM RSA key."
        )
    wanted = f'TXT {name} "v=DKIM1; k=rsa; p={mine}"'

    def run() -> Finding:
        records = [t for t in lookup.txt(name) if "p=" in t]
        if not records:
            return Finding("dkim", title, FAIL, f"no DKIM key published at {name}", f"Publish {wanted}")
        published = _tags(records[0]).get("p", "")
        if not published:
            return Finding("dkim", title, FAIL, f"the key at {name} is empty (revoked)", f"Publish {wanted}")
        if published != mine:
            return Finding(
                "dkim", title, FAIL, f"the key published at {name} is not the one in NEWSLETTER_DKIM_KEY_FILE",
                f"Publish {wanted} (or point NEWSLETTER_DKIM_SELECTOR at the selector of this key).",
            )  # fmt: skip
        return Finding("dkim", title, PASS, f"the published key matches NEWSLETTER_DKIM_KEY_FILE ({name})")

    return _guarded("dkim", title, run)


# --- DMARC -------------------------------------------------------------------------


def _aligned(domain: str, with_domain: str, mode: str) -> bool:
    if mode == "s":
        return domain.lower() == with_domain.lower()
    return org_domain(domain) == org_domain(with_domain)


def check_dmarc(settings: Settings, lookup: Lookup) -> Finding:
    sender = from_domain(settings)
    title = f"DMARC for {sender} (the From domain)"

    def run() -> Finding:
        where = f"_dmarc.{sender}"
        records = [t for t in lookup.txt(where) if re.match(r"(?i)^v=DMARC1\s*(;|$)", t)]
        if not records and org_domain(sender) != sender:
            where = f"_dmarc.{org_domain(sender)}"
            records = [t for t in lookup.txt(where) if re.match(r"(?i)^v=DMARC1\s*(;|$)", t)]
        if not records:
            return Finding(
                "dmarc", title, FAIL, f"no DMARC record at _dmarc.{sender}: Gmail and Yahoo require one from bulk senders",
                f'Publish TXT _dmarc.{sender} "v=DMARC1; p=none; rua=mailto:dmarc@{sender}" (then move to quarantine).',
            )  # fmt: skip
        tags = _tags(records[0])
        policy = tags.get("p", "")
        if policy not in ("none", "quarantine", "reject"):
            return Finding(
                "dmarc", title, FAIL, f"{records[0]!r} has no valid p= policy", "Add p=none (or stricter)."
            )
        spf_ok = _aligned(envelope_domain(settings), sender, tags.get("aspf", "r"))
        dkim_ok = bool(settings.dkim_domain) and _aligned(
            settings.dkim_domain, sender, tags.get("adkim", "r")
        )
        seen = f"{records[0]!r} at {where}; SPF {'aligned' if spf_ok else 'not aligned'}"
        seen += f", DKIM {'aligned' if dkim_ok else 'not aligned' if settings.dkim_domain else 'off'}"
        if spf_ok or dkim_ok:
            return Finding("dmarc", title, PASS, f"{seen}; policy {policy}")
        if provider(settings) in ESPS:
            return Finding(
                "dmarc", title, WARN, seen + f"; alignment rests on {provider(settings)}'s DKIM for {sender}",
                f"Verify {sender} with {provider(settings)} so it signs as your domain.",
            )  # fmt: skip
        return Finding(
            "dmarc", title, FAIL, seen + ": DMARC fails for every message",
            f"Sign with DKIM as {sender} (NEWSLETTER_DKIM_DOMAIN) or send from a return path under {sender}.",
        )  # fmt: skip

    return _guarded("dmarc", title, run)


# --- MX for bounces ------------------------------------------------------------------


def check_bounce_domain(settings: Settings, lookup: Lookup) -> Finding:
    domain = envelope_domain(settings)
    title = f"MX for {domain} (where bounces return)"

    def run() -> Finding:
        mx = lookup.records(domain, "MX")
        hosts = sorted(str(r.exchange).rstrip(".") for r in mx)
        if hosts == [""]:
            return Finding(
                "bounce-domain", title, FAIL, f"{domain} publishes a null MX: it accepts no mail, so no bounce",
                "Use a return path on a domain that receives mail (NEWSLETTER_BOUNCE_RETURN_PATH).",
            )  # fmt: skip
        if hosts:
            return Finding("bounce-domain", title, PASS, f"MX {', '.join(hosts)}")
        addresses = [str(r) for t in ("A", "AAAA") for r in lookup.records(domain, t)]
        if addresses:
            return Finding(
                "bounce-domain", title, WARN, f"no MX, only an address ({', '.join(addresses)}): some receivers will not bounce to it",
                f"Publish an MX for {domain} pointing at the server that receives bounces.",
            )  # fmt: skip
        return Finding(
            "bounce-domain", title, FAIL, f"{domain} has neither MX nor address: bounces cannot come back",
            f"Publish an MX for {domain} (and read the mailbox with NEWSLETTER_BOUNCE_MAILBOX).",
        )  # fmt: skip

    return _guarded("bounce-domain", title, run)


def dns_findings(settings: Settings) -> list:
    """The DNS checks as (name, callable) pairs, so the caller can run them side by side."""
    lookup = Lookup(settings)
    return [
        ("spf", lambda: check_spf(settings, lookup)),
        ("dkim", lambda: check_dkim(settings, lookup)),
        ("dmarc", lambda: check_dmarc(settings, lookup)),
        ("bounce-domain", lambda: check_bounce_domain(settings, lookup)),
    ]
