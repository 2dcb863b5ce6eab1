"""The OpenID provider's page texts, in the languages of hub/web/i18n.py, added to its
catalogue when this module is imported (hub/api/oauth.py imports it), so `t()` and the
every-key-in-both-languages test cover them. Scopes and claims are described in plain words:
what the brand will get."""
from __future__ import annotations

from hub.web import i18n

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "oidc.consent_title": "Share with {client}?",
        "oidc.consent_intro": "{client} asks to use your coalition account. If you agree, it will be able to:",
        "oidc.consent_claims": "It will receive:",
        "oidc.consent_later": "You can withdraw this at any time from your account.",
        "oidc.allow": "Allow",
        "oidc.deny": "Don't allow",
        "oidc.scope.openid": "Recognise you when you sign in (your account stays anonymous to it)",
        "oidc.scope.profile": "See your name and language",
        "oidc.scope.email": "See your email address",
        "oidc.scope.phone": "See your phone number",
        "oidc.scope.offline_access": "Stay connected when you are not signed in",
        "oidc.scope.me:read": "See your points balances and memberships in every program",
        "oidc.scope.me:write": "Manage your account's settings and consents for you",
        "oidc.scope.me:points": "Convert your points between programs and give points to your family",
        "oidc.claim.name": "Your full name",
        "oidc.claim.given_name": "Your given name",
        "oidc.claim.family_name": "Your family name",
        "oidc.claim.locale": "Your language",
        "oidc.claim.email": "Your email address",
        "oidc.claim.email_verified": "Whether your email address is confirmed",
        "oidc.claim.phone_number": "Your phone number",
        "oidc.claim.phone_number_verified": "Whether your phone number is confirmed",
        "oidc.error_title": "This sign-in request cannot be completed",
        "oidc.error_text": "The site that sent you here made a request we cannot answer safely ({message}). Go back to it and try again.",
        "oidc.logout_title": "Log out?",
        "oidc.logout_text": "Do you want to log out of your coalition account, on every brand's site?",
        "oidc.logout_button": "Log out",
        "oidc.logged_out_title": "You are logged out",
        "oidc.logged_out_text": "You are logged out of your coalition account.",
    },
    "id": {
        "oidc.consent_title": "Bagikan ke {client}?",
        "oidc.consent_intro": "{client} meminta izin memakai akun koalisi Anda. Jika Anda setuju, {client} dapat:",
        "oidc.consent_claims": "Yang akan diterima:",
        "oidc.consent_later": "Anda dapat mencabut izin ini kapan saja dari akun Anda.",
        "oidc.allow": "Izinkan",
        "oidc.deny": "Jangan izinkan",
        "oidc.scope.openid": "Mengenali Anda saat masuk (akun Anda tetap anonim baginya)",
        "oidc.scope.profile": "Melihat nama dan bahasa Anda",
        "oidc.scope.email": "Melihat alamat email Anda",
        "oidc.scope.phone": "Melihat nomor telepon Anda",
        "oidc.scope.offline_access": "Tetap terhubung saat Anda tidak sedang masuk",
        "oidc.scope.me:read": "Melihat saldo poin dan keanggotaan Anda di setiap program",
        "oidc.scope.me:write": "Mengelola pengaturan dan izin akun Anda atas nama Anda",
        "oidc.scope.me:points": "Menukar poin Anda antarprogram dan memberikan poin kepada keluarga Anda",
        "oidc.claim.name": "Nama lengkap Anda",
        "oidc.claim.given_name": "Nama depan Anda",
        "oidc.claim.family_name": "Nama keluarga Anda",
        "oidc.claim.locale": "Bahasa Anda",
        "oidc.claim.email": "Alamat email Anda",
        "oidc.claim.email_verified": "Apakah alamat email Anda sudah dikonfirmasi",
        "oidc.claim.phone_number": "Nomor telepon Anda",
        "oidc.claim.phone_number_verified": "Apakah nomor telepon Anda sudah dikonfirmasi",
        "oidc.error_title": "Permintaan masuk ini tidak dapat diselesaikan",
        "oidc.error_text": "Situs yang mengarahkan Anda ke sini membuat permintaan yang tidak dapat kami jawab dengan aman ({message}). Kembali ke situs itu dan coba lagi.",
        "oidc.logout_title": "Keluar?",
        "oidc.logout_text": "Apakah Anda ingin keluar dari akun koalisi Anda, di situs semua merek?",
        "oidc.logout_button": "Keluar",
        "oidc.logged_out_title": "Anda sudah keluar",
        "oidc.logged_out_text": "Anda sudah keluar dari akun koalisi Anda.",
    },
}

i18n.add_messages(MESSAGES)
