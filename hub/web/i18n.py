"""English and Bahasa Indonesia for the pages and mails.

`locale()` picks the language: the first supported tag of the `ui_locales` query parameter
(OIDC's, also what the language links use; remembered in a cookie), else that cookie, else
the browser's Accept-Language, else English. `t(key, **values)` is the text in that language.
Every visible string goes through `t`; tests check that both languages have every key.
The account pages' texts are below; another part of the hub adds its own with `add_messages`
where it defines them, at import (the OpenID provider's: hub/api/oidc_text.py).
"""
from __future__ import annotations

from flask import Flask, g, request, url_for

DEFAULT = "en"
LANGUAGES = (("en", "English"), ("id", "Bahasa Indonesia"))  # each named in itself
SUPPORTED = tuple(code for code, _ in LANGUAGES)
COOKIE = "hub_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "brand": "Coalition Hub",
        "skip_to_content": "Skip to content",
        "language": "Language",
        "logged_in_as": "Logged in as {email}.",
        "logout": "Log out",
        "errors_title": "Please check the form",
        "email": "Email address",
        "password": "Password",
        "new_password": "New password",
        "confirm_password": "New password again",
        "password_hint": "At least {min} characters. A few words you will remember work well.",
        "given_name": "Given name",
        "family_name": "Family name",
        "optional": "Optional.",
        "login_title": "Log in",
        "login_again": "Please log in again to continue.",
        "login_button": "Log in",
        "login_link": "Log in",
        "forgot_password": "Forgot your password?",
        "no_account": "No account yet?",
        "signup_link": "Create one",
        "have_account": "Already have an account?",
        "code_title": "Two-step verification",
        "code_intro": "Enter the 6-digit code from your authenticator app, or one of your recovery codes.",
        "code": "Code",
        "code_hint": "For example 123456, or a recovery code like abcd-efgh-ijkl-mnop.",
        "code_button": "Verify",
        "start_over": "Start over",
        "signup_title": "Create your coalition account",
        "signup_button": "Create account",
        "signup_sent_title": "Check your email",
        "signup_sent_text": "We sent a message to {email}. Open the link in it to confirm your address.",
        "verify_title": "Confirm your email address",
        "verify_intro": "Press the button to confirm this email address for your account.",
        "verify_button": "Confirm my email address",
        "verify_failed_title": "This link does not work",
        "verified_title": "Email address confirmed",
        "verified_text": "Thank you: your email address is confirmed.",
        "continue": "Continue",
        "reset_title": "Reset your password",
        "reset_intro": "Enter your account's email address and we will send you a link to choose a new password.",
        "reset_button": "Send the link",
        "reset_sent_title": "Check your email",
        "reset_sent_text": "If an account uses that address, we have sent it a link to choose a new password. The link works for one hour.",
        "reset_new_title": "Choose a new password",
        "reset_new_button": "Save the new password",
        "reset_failed_title": "This link does not work",
        "reset_again": "Ask for a new link",
        "reset_done_title": "Password changed",
        "reset_done_text": "Your new password is saved, and you have been logged out everywhere.",
        "security_title": "Account security",
        "email_verified": "confirmed",
        "email_unverified": "not confirmed yet: open the link we emailed you",
        "totp_title": "Two-step verification",
        "totp_off": "Off. Turn it on to ask for a code from an authenticator app after your password.",
        "totp_begin": "Turn on two-step verification",
        "totp_scan": "Add this account to your authenticator app, then enter the code it shows.",
        "totp_open_app": "Open in my authenticator app",
        "totp_key": "Or type this key into the app:",
        "code_from_app": "Code from the app",
        "totp_confirm": "Turn on",
        "totp_on": "On. You have {left} unused recovery codes.",
        "code_current": "Current code from your app",
        "password_current": "Your current password",
        "regenerate_codes": "Make new recovery codes",
        "totp_disable": "Turn off two-step verification",
        "codes_title": "Your recovery codes",
        "codes_intro": "Keep these codes somewhere safe. Each one logs you in once if you lose your phone. They are shown only now.",
        "codes_done": "I have saved them",
        "notice.totp-off": "Two-step verification is off.",
        "too_many_title": "Too many attempts",
        "too_many_text": "For your account's safety, please wait {minutes} minutes and try again.",
        "form_expired_title": "Please try again",
        "form_expired_text": "This form has expired or was not sent from this site. Nothing was changed.",
        "try_again": "Try again",
        "error.login-wrong": "The email address or password is not right.",
        "error.code-wrong": "That code is not right.",
        "error.password-wrong": "That is not your password.",
        "error.token-invalid": "This link has expired or was already used. Please ask for a new one.",
        "error.password-mismatch": "The two passwords are not the same.",
        "error.email-invalid": "Enter an email address like name@example.com.",
        "error.password-short": "Choose a password of at least {min} characters.",
        "error.password-long": "Choose a password of at most {max} characters.",
        "error.name-invalid": "A name can have at most {name_max} letters, without special characters.",
        "error.totp-already-on": "Two-step verification is already on.",
        "error.totp-off": "Two-step verification is off.",
        "mail.verify_subject": "Confirm your email address",
        "mail.verify_body": "Hello,\n\nPlease confirm your email address for your coalition account:\n\n{link}\n\nThe link works for two days. If you did not sign up, ignore this message.\n",
        "mail.exists_subject": "Someone tried to sign up with your address",
        "mail.exists_body": "Hello,\n\nSomeone (maybe you) tried to create a coalition account with this email address, which already has one.\n\nLog in: {login}\nForgot your password? {link}\n\nIf it was not you, you can ignore this message.\n",
        "mail.reset_subject": "Reset your password",
        "mail.reset_body": "Hello,\n\nTo choose a new password for your coalition account, open this link:\n\n{link}\n\nThe link works for one hour. If you did not ask for it, ignore this message: your password stays as it is.\n",
        "mail.code_guesses_subject": "Someone is trying codes on your account",
        "mail.code_guesses_body": "Hello,\n\nToday someone typed your password correctly, then {count} wrong two-step verification codes for your coalition account. If that was not you, someone knows your password: choose a new one now, from this page:\n\n{link}\n\nUntil you do, no more codes are accepted for your account for up to 24 hours, even right ones. A new password ends that at once, and keeps whoever it was out.\n",
    },
    "id": {
        "brand": "Coalition Hub",
        "skip_to_content": "Langsung ke konten",
        "language": "Bahasa",
        "logged_in_as": "Masuk sebagai {email}.",
        "logout": "Keluar",
        "errors_title": "Mohon periksa formulir",
        "email": "Alamat email",
        "password": "Kata sandi",
        "new_password": "Kata sandi baru",
        "confirm_password": "Ulangi kata sandi baru",
        "password_hint": "Minimal {min} karakter. Beberapa kata yang mudah Anda ingat sudah cukup.",
        "given_name": "Nama depan",
        "family_name": "Nama belakang",
        "optional": "Opsional.",
        "login_title": "Masuk",
        "login_again": "Silakan masuk lagi untuk melanjutkan.",
        "login_button": "Masuk",
        "login_link": "Masuk",
        "forgot_password": "Lupa kata sandi?",
        "no_account": "Belum punya akun?",
        "signup_link": "Buat akun",
        "have_account": "Sudah punya akun?",
        "code_title": "Verifikasi dua langkah",
        "code_intro": "Masukkan kode 6 digit dari aplikasi autentikator Anda, atau salah satu kode pemulihan Anda.",
        "code": "Kode",
        "code_hint": "Misalnya 123456, atau kode pemulihan seperti abcd-efgh-ijkl-mnop.",
        "code_button": "Verifikasi",
        "start_over": "Mulai lagi",
        "signup_title": "Buat akun koalisi Anda",
        "signup_button": "Buat akun",
        "signup_sent_title": "Periksa email Anda",
        "signup_sent_text": "Kami telah mengirim pesan ke {email}. Buka tautan di dalamnya untuk mengonfirmasi alamat Anda.",
        "verify_title": "Konfirmasi alamat email Anda",
        "verify_intro": "Tekan tombol untuk mengonfirmasi alamat email ini untuk akun Anda.",
        "verify_button": "Konfirmasi alamat email saya",
        "verify_failed_title": "Tautan ini tidak berlaku",
        "verified_title": "Alamat email terkonfirmasi",
        "verified_text": "Terima kasih: alamat email Anda sudah terkonfirmasi.",
        "continue": "Lanjutkan",
        "reset_title": "Atur ulang kata sandi",
        "reset_intro": "Masukkan alamat email akun Anda, dan kami akan mengirim tautan untuk memilih kata sandi baru.",
        "reset_button": "Kirim tautan",
        "reset_sent_title": "Periksa email Anda",
        "reset_sent_text": "Jika ada akun dengan alamat itu, kami telah mengirim tautan untuk memilih kata sandi baru. Tautan berlaku satu jam.",
        "reset_new_title": "Pilih kata sandi baru",
        "reset_new_button": "Simpan kata sandi baru",
        "reset_failed_title": "Tautan ini tidak berlaku",
        "reset_again": "Minta tautan baru",
        "reset_done_title": "Kata sandi diubah",
        "reset_done_text": "Kata sandi baru Anda tersimpan, dan Anda telah dikeluarkan dari semua perangkat.",
        "security_title": "Keamanan akun",
        "email_verified": "terkonfirmasi",
        "email_unverified": "belum terkonfirmasi: buka tautan yang kami kirim lewat email",
        "totp_title": "Verifikasi dua langkah",
        "totp_off": "Nonaktif. Aktifkan untuk meminta kode dari aplikasi autentikator setelah kata sandi Anda.",
        "totp_begin": "Aktifkan verifikasi dua langkah",
        "totp_scan": "Tambahkan akun ini ke aplikasi autentikator Anda, lalu masukkan kode yang ditampilkannya.",
        "totp_open_app": "Buka di aplikasi autentikator saya",
        "totp_key": "Atau ketik kunci ini di aplikasi:",
        "code_from_app": "Kode dari aplikasi",
        "totp_confirm": "Aktifkan",
        "totp_on": "Aktif. Anda punya {left} kode pemulihan yang belum dipakai.",
        "code_current": "Kode saat ini dari aplikasi Anda",
        "password_current": "Kata sandi Anda saat ini",
        "regenerate_codes": "Buat kode pemulihan baru",
        "totp_disable": "Nonaktifkan verifikasi dua langkah",
        "codes_title": "Kode pemulihan Anda",
        "codes_intro": "Simpan kode-kode ini di tempat yang aman. Masing-masing bisa dipakai sekali untuk masuk jika ponsel Anda hilang. Kode hanya ditampilkan sekarang.",
        "codes_done": "Sudah saya simpan",
        "notice.totp-off": "Verifikasi dua langkah nonaktif.",
        "too_many_title": "Terlalu banyak percobaan",
        "too_many_text": "Demi keamanan akun Anda, mohon tunggu {minutes} menit lalu coba lagi.",
        "form_expired_title": "Silakan coba lagi",
        "form_expired_text": "Formulir ini sudah kedaluwarsa atau tidak dikirim dari situs ini. Tidak ada yang diubah.",
        "try_again": "Coba lagi",
        "error.login-wrong": "Alamat email atau kata sandi salah.",
        "error.code-wrong": "Kode itu salah.",
        "error.password-wrong": "Itu bukan kata sandi Anda.",
        "error.token-invalid": "Tautan ini sudah kedaluwarsa atau sudah dipakai. Silakan minta yang baru.",
        "error.password-mismatch": "Kedua kata sandi tidak sama.",
        "error.email-invalid": "Masukkan alamat email seperti nama@contoh.com.",
        "error.password-short": "Pilih kata sandi minimal {min} karakter.",
        "error.password-long": "Pilih kata sandi maksimal {max} karakter.",
        "error.name-invalid": "Nama boleh berisi paling banyak {name_max} huruf, tanpa karakter khusus.",
        "error.totp-already-on": "Verifikasi dua langkah sudah aktif.",
        "error.totp-off": "Verifikasi dua langkah nonaktif.",
        "mail.verify_subject": "Konfirmasi alamat email Anda",
        "mail.verify_body": "Halo,\n\nMohon konfirmasi alamat email untuk akun koalisi Anda:\n\n{link}\n\nTautan berlaku dua hari. Jika Anda tidak mendaftar, abaikan pesan ini.\n",
        "mail.exists_subject": "Seseorang mencoba mendaftar dengan alamat Anda",
        "mail.exists_body": "Halo,\n\nSeseorang (mungkin Anda) mencoba membuat akun koalisi dengan alamat email ini, yang sudah memiliki akun.\n\nMasuk: {login}\nLupa kata sandi? {link}\n\nJika itu bukan Anda, abaikan pesan ini.\n",
        "mail.reset_subject": "Atur ulang kata sandi Anda",
        "mail.reset_body": "Halo,\n\nUntuk memilih kata sandi baru bagi akun koalisi Anda, buka tautan ini:\n\n{link}\n\nTautan berlaku satu jam. Jika Anda tidak memintanya, abaikan pesan ini: kata sandi Anda tetap sama.\n",
        "mail.code_guesses_subject": "Seseorang mencoba kode pada akun Anda",
        "mail.code_guesses_body": "Halo,\n\nHari ini seseorang memasukkan kata sandi Anda dengan benar, lalu {count} kode verifikasi dua langkah yang salah untuk akun koalisi Anda. Jika itu bukan Anda, seseorang mengetahui kata sandi Anda: segera pilih kata sandi baru dari halaman ini:\n\n{link}\n\nSampai Anda melakukannya, tidak ada kode lagi yang diterima untuk akun Anda hingga 24 jam, bahkan kode yang benar. Kata sandi baru segera mengakhirinya dan menghentikan orang tersebut.\n",
    },
}


def add_messages(catalogue: dict[str, dict[str, str]]) -> None:
    """Add texts to the catalogue: every language, the same keys in each, and no key that
    already has another text (a clash would silently change someone else's page)."""
    if set(catalogue) != set(SUPPORTED):
        raise ValueError(f"texts for {sorted(catalogue)}, not for {sorted(SUPPORTED)}")
    keys = catalogue[DEFAULT].keys()
    for language, texts in catalogue.items():
        if texts.keys() != keys:
            raise ValueError(f"{language} differs from {DEFAULT} in {sorted(texts.keys() ^ keys)}")
        clashes = sorted(k for k, text in texts.items() if MESSAGES[language].get(k, text) != text)
        if clashes:
            raise ValueError(f"{language} already has other texts for {clashes}")
    for language, texts in catalogue.items():
        MESSAGES[language].update(texts)


def _supported(tag: str) -> str | None:
    base = tag.strip().split("-")[0].lower()
    return base if base in SUPPORTED else None


def locale() -> str:
    """The language of this request's pages (en or id)."""
    if "hub_locale" not in g:
        asked = next(filter(None, map(_supported, request.args.get("ui_locales", "").split())), None)
        if asked is not None:
            g.hub_locale_remember = asked
        g.hub_locale = (asked or _supported(request.cookies.get(COOKIE, ""))
                        or request.accept_languages.best_match(SUPPORTED) or DEFAULT)
    return g.hub_locale


def t(key: str, **values) -> str:
    return MESSAGES[locale()][key].format(**values)


def number(value, places: int = 0) -> str:
    """A number as this language writes it: 12,345.50 in English, 12.345,50 in Indonesian."""
    text = f"{value:,.{places}f}"
    if locale() == "id":
        text = text.translate(str.maketrans(",.", ".,"))
    return text


def language_url(code: str) -> str:
    """This page in another language."""
    args = {k: v for k, v in request.args.items() if k != "ui_locales"}
    return url_for(request.endpoint, **(request.view_args or {}), **args, ui_locales=code)


def template_globals() -> dict:
    return {"t": t, "locale": locale, "languages": lambda: LANGUAGES, "language_url": language_url,
            "number": number}


def _remember(response):
    chosen = g.get("hub_locale_remember")
    if chosen:
        # A language choice, no secret: kept a year.
        response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, path="/", httponly=True,
                            samesite="Lax", secure=request.is_secure)
    return response


def init_app(flask_app: Flask) -> None:
    flask_app.after_request(_remember)
