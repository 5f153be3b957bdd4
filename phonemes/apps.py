from django.apps import AppConfig


class PhonemesConfig(AppConfig):
    name = "phonemes"
    verbose_name = "Phoneme similarity"
