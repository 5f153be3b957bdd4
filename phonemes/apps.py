from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PhonemesConfig(AppConfig):
    name = "phonemes"
    verbose_name = _("Phoneme similarity")
