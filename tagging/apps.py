from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "标签"

    def ready(self):
        from customers import services as customer_services
        from tagging.conversation import note_created_scan

        # conversation tags: every saved note is scanned into tag suggestions (after commit)
        if note_created_scan not in customer_services.NOTE_CREATED_HOOKS:
            customer_services.NOTE_CREATED_HOOKS.append(note_created_scan)
