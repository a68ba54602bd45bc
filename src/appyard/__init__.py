"""appyard: a self-hosted home for mobile app builds."""
