"""English and Bahasa Indonesia for the data download and account deletion pages
(hub/web/privacy_pages.py), added to the catalogue of hub/web/i18n.py at import."""
from hub.web.i18n import add_messages

MESSAGES = {
    "en": {
        "privacy.data_title": "Your data",
        "privacy.download": "Download my data",
        "privacy.delete_link": "Delete my account",
        "privacy.delete_title": "Delete your coalition account",
        "privacy.delete_intro": "Deleting your account erases your email address, names, login, memberships' card numbers, phone numbers and email addresses, what you told partners about yourself, and the messages we sent you. Every brand you signed in to is logged out and told to erase what it holds about you. This cannot be undone.",
        "privacy.delete_kept": "We keep, without anything that identifies you, the points movements and purchase amounts partners and the coalition need to settle their accounts.",
        "privacy.forfeit_intro": "The points you still hold are forfeited:",
        "privacy.forfeit_line": "{program}: {points} points",
        "privacy.forfeit_none": "You hold no points, so none are forfeited.",
        "privacy.download_first": "You may want to download your data first.",
        "privacy.delete_button": "Delete my account for good",
        "privacy.deleted_title": "Your account is deleted",
        "privacy.deleted_text": "Your personal data is erased and you are logged out everywhere. Thank you for having been a member.",
        "privacy.error.erasure-in-flight": "A reward order or points conversion of yours is still being completed. Please try again once it has finished.",
    },
    "id": {
        "privacy.data_title": "Data Anda",
        "privacy.download": "Unduh data saya",
        "privacy.delete_link": "Hapus akun saya",
        "privacy.delete_title": "Hapus akun koalisi Anda",
        "privacy.delete_intro": "Menghapus akun akan menghapus alamat email, nama, login, nomor kartu, nomor telepon dan alamat email keanggotaan Anda, apa yang Anda beritahukan kepada mitra tentang diri Anda, serta pesan yang kami kirim kepada Anda. Setiap merek tempat Anda masuk akan dikeluarkan dan diminta menghapus data Anda. Tindakan ini tidak dapat dibatalkan.",
        "privacy.delete_kept": "Kami tetap menyimpan, tanpa apa pun yang mengenali Anda, mutasi poin dan nilai pembelian yang dibutuhkan mitra dan koalisi untuk penyelesaian keuangan.",
        "privacy.forfeit_intro": "Poin yang masih Anda miliki akan hangus:",
        "privacy.forfeit_line": "{program}: {points} poin",
        "privacy.forfeit_none": "Anda tidak memiliki poin, jadi tidak ada yang hangus.",
        "privacy.download_first": "Anda mungkin ingin mengunduh data Anda terlebih dahulu.",
        "privacy.delete_button": "Hapus akun saya selamanya",
        "privacy.deleted_title": "Akun Anda telah dihapus",
        "privacy.deleted_text": "Data pribadi Anda telah dihapus dan Anda telah dikeluarkan di mana pun. Terima kasih telah menjadi anggota.",
        "privacy.error.erasure-in-flight": "Pesanan hadiah atau konversi poin Anda masih diproses. Silakan coba lagi setelah selesai.",
    },
}

add_messages(MESSAGES)
