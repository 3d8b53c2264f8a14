"""Record categories and purposes of the programme (reference jpki-simulation.md section c).

Labels are plain Japanese and English for the pages. Sensitive categories are never
pre-selected and need explicit, per-category consent.
"""

from __future__ import annotations

CATEGORIES: dict[str, tuple[str, str]] = {
    "qualification": ("資格情報（保険者・被保険者）", "Insurance qualification"),
    "medication": ("薬剤情報", "Medication (claims-based)"),
    "eprescription": ("電子処方箋の調剤情報", "e-prescription dispensing"),
    "clinical_claims": ("診療情報（受診歴・診療行為）", "Clinical claims (visits, procedures)"),
    "surgery": ("手術情報", "Surgery"),
    "dialysis": ("透析情報", "Dialysis"),
    "specific_checkup": ("特定健診・後期高齢者健診", "Specific health checkups"),
    "checkup_report": ("健康診断結果報告書", "Health checkup reports"),
    "referral_letter": ("診療情報提供書", "Referral letters"),
    "discharge_summary": ("退院時サマリー", "Discharge summaries"),
    "diagnoses": ("傷病名", "Diagnoses"),
    "infection": ("感染症", "Infectious diseases"),
    "drug_allergy": ("薬剤アレルギー・薬剤禁忌", "Drug allergies and contraindications"),
    "other_allergy": ("その他のアレルギー", "Other allergies"),
    "lab_results": ("検査結果", "Laboratory results"),
    "prescriptions": ("処方", "Prescriptions"),
    "mental_health": ("精神科・心療内科の情報", "Mental health"),
    "genetic": ("遺伝子・ゲノム情報", "Genetic information"),
    "reproductive": ("生殖・妊娠に関する情報", "Reproductive health"),
}
SENSITIVE = frozenset({"infection", "mental_health", "genetic", "reproductive"})
PURPOSES: dict[str, tuple[str, str]] = {
    "treatment_visit": ("受診中の診療", "Treatment during a visit"),
    "treatment_referral": ("紹介先での診療", "Treatment after referral"),
    "dispensing": ("調剤", "Dispensing"),
    "home_or_online_care": ("在宅・オンライン診療", "Home or online care"),
    "emergency": ("救急医療", "Emergency care"),
    "disaster": ("災害時の医療", "Care in a disaster"),
    "self_view": ("本人による閲覧", "Viewing your own record"),
    "secondary_use": ("研究などの二次利用", "Research and other secondary use"),
}
