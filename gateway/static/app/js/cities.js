// State capitals with approximate coordinates: the "city" choice when the browser's location
// is not shared (search by distance) and a doctor's office location at sign-up.
export const CITIES = [
  ["Aracaju", "SE", -10.91, -37.07],
  ["Belém", "PA", -1.46, -48.5],
  ["Belo Horizonte", "MG", -19.92, -43.94],
  ["Boa Vista", "RR", 2.82, -60.67],
  ["Brasília", "DF", -15.79, -47.88],
  ["Campo Grande", "MS", -20.47, -54.62],
  ["Cuiabá", "MT", -15.6, -56.1],
  ["Curitiba", "PR", -25.43, -49.27],
  ["Florianópolis", "SC", -27.6, -48.55],
  ["Fortaleza", "CE", -3.73, -38.52],
  ["Goiânia", "GO", -16.69, -49.26],
  ["João Pessoa", "PB", -7.12, -34.86],
  ["Macapá", "AP", 0.03, -51.07],
  ["Maceió", "AL", -9.67, -35.74],
  ["Manaus", "AM", -3.12, -60.02],
  ["Natal", "RN", -5.79, -35.21],
  ["Palmas", "TO", -10.18, -48.33],
  ["Porto Alegre", "RS", -30.03, -51.23],
  ["Porto Velho", "RO", -8.76, -63.9],
  ["Recife", "PE", -8.05, -34.88],
  ["Rio Branco", "AC", -9.97, -67.81],
  ["Rio de Janeiro", "RJ", -22.91, -43.17],
  ["Salvador", "BA", -12.97, -38.5],
  ["São Luís", "MA", -2.53, -44.3],
  ["São Paulo", "SP", -23.55, -46.63],
  ["Teresina", "PI", -5.09, -42.8],
  ["Vitória", "ES", -20.32, -40.34],
];

export const UFS = [...new Set(CITIES.map((c) => c[1]))].sort();

export function city(name) {
  return CITIES.find((c) => c[0] === name);
}
