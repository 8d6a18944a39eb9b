"""Why a doc got its cats: [CLS] attention, the HTML view, and plots."""
