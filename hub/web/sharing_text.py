"""English and Bahasa Indonesia for the sharing page (hub/web/sharing.py), added to the
catalogue of hub/web/i18n.py at import."""
from hub.web.i18n import add_messages

MESSAGES = {
    "en": {
        "sharing.link": "What partners may see",
        "sharing.title": "What your partners may see",
        "sharing.intro": ("Each partner sees your membership in its own programs and what you did there. It sees "
                          "nothing more unless you choose to share it here, one partner and one kind of data at a "
                          "time. You can stop sharing whenever you like: it takes effect at once."),
        "sharing.purpose.profile": "Your name and email",
        "sharing.purpose.purchase_history": "Your activity at other partners",
        "sharing.purpose.balances": "Your balances at other partners",
        "sharing.explain.profile": "The name and email address of your coalition account.",
        "sharing.explain.purchase_history": ("The points you earned and spent in other partners' programs, "
                                             "including what you bought or returned there."),
        "sharing.explain.balances": "How many points you hold in other partners' programs.",
        "sharing.purpose.attributes": "What you told us about yourself, for offers",
        "sharing.purpose.programs_held": "Which other programs you belong to, for offers",
        "sharing.explain.attributes": ("Your city, birth month, interests and preferred language, if you gave "
                                       "them. The partner may choose you for its offers by them: it never reads "
                                       "them, but learns that you are in the group it chose (for example, "
                                       "people in Jakarta)."),
        "sharing.explain.programs_held": ("Which other partners' programs you are a member of. The partner may "
                                          "choose you for its offers by them: it learns that you are in the group "
                                          "it chose (for example, members of another program)."),
        "sharing.caption": "What {partner} may see",
        "sharing.what": "What",
        "sharing.status": "Shared",
        "sharing.not_shared": "Not shared",
        "sharing.shared_since": "Shared since {date}",
        "sharing.grant": "Share",
        "sharing.grant_label": "Share {what} with {partner}",
        "sharing.revoke": "Stop sharing",
        "sharing.revoke_label": "Stop sharing {what} with {partner}",
        "sharing.no_partners": "You have no memberships yet, so there is nobody to share with.",
        "sharing.notice_granted": "Shared. You can stop sharing at any time.",
        "sharing.notice_revoked": "Stopped: that partner no longer sees it.",
        "sharing.refused_title": "That did not work",
        "sharing.refused_text": "That partner or kind of data is not one you can choose here.",
        "sharing.back": "Back to sharing",
    },
    "id": {
        "sharing.link": "Yang boleh dilihat mitra",
        "sharing.title": "Yang boleh dilihat mitra Anda",
        "sharing.intro": ("Setiap mitra melihat keanggotaan Anda di programnya sendiri dan aktivitas Anda di sana. "
                          "Mitra tidak melihat apa pun selebihnya kecuali Anda memilih membagikannya di sini, satu "
                          "mitra dan satu jenis data setiap kali. Anda dapat berhenti berbagi kapan saja: langsung "
                          "berlaku."),
        "sharing.purpose.profile": "Nama dan email Anda",
        "sharing.purpose.purchase_history": "Aktivitas Anda di mitra lain",
        "sharing.purpose.balances": "Saldo Anda di mitra lain",
        "sharing.explain.profile": "Nama dan alamat email akun koalisi Anda.",
        "sharing.explain.purchase_history": ("Poin yang Anda peroleh dan gunakan di program mitra lain, termasuk "
                                             "apa yang Anda beli atau kembalikan di sana."),
        "sharing.explain.balances": "Berapa poin yang Anda miliki di program mitra lain.",
        "sharing.purpose.attributes": "Yang Anda ceritakan tentang diri Anda, untuk penawaran",
        "sharing.purpose.programs_held": "Program lain yang Anda ikuti, untuk penawaran",
        "sharing.explain.attributes": ("Kota, bulan lahir, minat, dan bahasa pilihan Anda, jika Anda "
                                       "memberikannya. Mitra dapat memilih Anda untuk penawarannya berdasarkan "
                                       "data itu: mitra tidak pernah membacanya, tetapi mengetahui bahwa Anda "
                                       "termasuk dalam kelompok yang dipilihnya (misalnya, orang di Jakarta)."),
        "sharing.explain.programs_held": ("Program mitra lain yang Anda ikuti. Mitra dapat memilih Anda untuk "
                                          "penawarannya berdasarkan keanggotaan itu: mitra mengetahui bahwa Anda "
                                          "termasuk dalam kelompok yang dipilihnya (misalnya, anggota program "
                                          "lain)."),
        "sharing.caption": "Yang boleh dilihat {partner}",
        "sharing.what": "Apa",
        "sharing.status": "Dibagikan",
        "sharing.not_shared": "Tidak dibagikan",
        "sharing.shared_since": "Dibagikan sejak {date}",
        "sharing.grant": "Bagikan",
        "sharing.grant_label": "Bagikan {what} dengan {partner}",
        "sharing.revoke": "Berhenti berbagi",
        "sharing.revoke_label": "Berhenti membagikan {what} dengan {partner}",
        "sharing.no_partners": "Anda belum memiliki keanggotaan, jadi belum ada yang dapat diberi data.",
        "sharing.notice_granted": "Dibagikan. Anda dapat berhenti berbagi kapan saja.",
        "sharing.notice_revoked": "Dihentikan: mitra itu tidak lagi melihatnya.",
        "sharing.refused_title": "Tidak berhasil",
        "sharing.refused_text": "Mitra atau jenis data itu tidak dapat Anda pilih di sini.",
        "sharing.back": "Kembali ke pengaturan berbagi",
    },
}

add_messages(MESSAGES)
